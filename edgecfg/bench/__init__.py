"""Benchmarks (``edgecfg bench ...``) and their load drivers.

Every benchmark measures against a baseline in the same run and prints its
verdicts; :mod:`edgecfg.bench.measure` holds the one percentile, RSS probe,
CPU clock and free-port helper they share.  The baselines' libraries (lz4,
jsonpatch) come with the optional ``bench`` extra.
"""
