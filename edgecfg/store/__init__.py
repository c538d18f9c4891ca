"""edgecfg.store."""
