"""edgecfg.sim."""
