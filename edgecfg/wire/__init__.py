"""edgecfg.wire."""
