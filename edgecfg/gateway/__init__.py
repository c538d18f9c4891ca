"""edgecfg.gateway."""
