"""What every benchmark measures with: percentiles, memory, CPU time, ports.

One definition each, so figures from different benchmarks compare:

- :func:`percentile` is the nearest rank on the ``(n - 1)`` scale (the value
  at index ``round(fraction * (n - 1))`` of the sorted sample; p99 of 100
  values the 99th), :func:`median` the usual median;
- :func:`rss_mib` is the resident set (``VmRSS``) of a process now and
  :func:`peak_rss_mib` this process's high-water mark;
- :func:`cpu_seconds` is user + system time of a process from ``/proc``, in
  clock ticks (10 ms on Linux): a run must last many ticks to be a figure.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Final

TICKS: Final = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (NaN for no values)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a percentile fraction is within 0..1, got {fraction}")
    ordered = sorted(values)
    return ordered[round(fraction * (len(ordered) - 1))] if ordered else float("nan")


def median(values: Sequence[float]) -> float:
    """The median (the mean of the middle two of an even sample; NaN for none)."""
    return statistics.median(values) if values else float("nan")


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of process ``pid`` (this one by default), in MiB."""
    status = Path(f"/proc/{'self' if pid is None else pid}/status")
    for line in status.read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"{status}: no VmRSS line (not Linux?)")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that was free a moment ago (for a child to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
