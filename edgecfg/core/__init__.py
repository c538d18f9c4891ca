"""edgecfg.core."""
