"""edgecfg.cli."""
