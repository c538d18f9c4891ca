"""edgecfg.agent."""
