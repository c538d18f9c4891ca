"""Telemetry analysis, pure: names, aggregates, buckets and the link monitor.

Everything here takes its data and its clock as arguments (DESIGN §2), so
the gateway's ingest, the CLI's views and the tests share one definition.

- :func:`resolve_time` finishes RFC 8428 §4.5.3 resolution (base name, base
  time and base unit are folded in by :func:`edgecfg.wire.senml.decode_senml`):
  a time below 2**28 is relative to the moment the pack arrived.
- :data:`REGISTRY` names the measurements the gateway knows, with their
  SenML unit (RFC 8428 §12.1) and :class:`Kind`.  Unknown names are kept
  as they come, never refused; a known name reported in another unit is
  kept under ``name[unit]`` so it does not mix with the registered series.
- :class:`Aggregate` is (count, sum, min, max, last): a commutative monoid
  under :meth:`Aggregate.merge`, so the aggregate of a concatenation is the
  merge of the parts' aggregates, in any grouping.  That is what lets a
  device's hours fold into days and devices into groups (downsampling).
- :func:`counter_delta`: cumulative counters (uptime, sync bytes, round
  trips) are stored as the increase between consecutive readings; a
  reading below the previous one is a reset (the device rebooted), and its
  whole value is the increase since.
- :class:`LinkMonitor` is a one-sided CUSUM (Page 1954): the sequential
  likelihood-ratio test for a drop of the mean of a Gaussian series by
  ``2 * k`` standard deviations (Montgomery, *Introduction to Statistical
  Quality Control*, §9.1), on a baseline (mean and standard deviation)
  learnt from the device's own first ``warmup`` readings.  It flags when the
  statistic exceeds ``h``; the change point is the last reading at which the
  statistic was zero (Page's estimate).  No fixed dBm threshold is involved:
  each device is judged against its own past.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final

RELATIVE_TIME: Final = float(2**28)  # RFC 8428 §4.5.3
HOUR: Final = 3600.0
DAY: Final = 86400.0


class Kind(Enum):
    """How a measurement's readings add up."""

    GAUGE = "gauge"
    """A level at the time of reading (battery, RSRP): aggregated as read."""
    COUNTER = "counter"
    """Cumulative since the device started (uptime, bytes): stored as the
    increase between consecutive readings (see :func:`counter_delta`)."""
    COUNT = "count"
    """Events since the previous pack (reboots, errors): aggregated as read,
    so the sum is the number of events."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """A registered measurement name."""

    name: str
    unit: str
    kind: Kind
    meaning: str
    low_is_worse: bool = False
    """Whether lower readings are worse (battery, signal); ranks ``top``."""


REGISTRY: Final[Mapping[str, Measurement]] = {
    m.name: m
    for m in (
        Measurement("battery", "%EL", Kind.GAUGE, "remaining battery energy", True),
        Measurement("battery_v", "V", Kind.GAUGE, "battery voltage", True),
        Measurement("rsrp", "dBm", Kind.GAUGE, "LTE reference signal received power", True),
        Measurement("rsrq", "dB", Kind.GAUGE, "LTE reference signal received quality", True),
        Measurement("sinr", "dB", Kind.GAUGE, "signal to interference and noise ratio", True),
        Measurement("ce_level", "/", Kind.GAUGE, "coverage enhancement level (0, 1, 2)"),
        Measurement("uptime", "s", Kind.COUNTER, "seconds since boot"),
        Measurement("reboots", "1", Kind.COUNT, "reboots since the previous pack"),
        Measurement("errors", "1", Kind.COUNT, "errors since the previous pack"),
        Measurement("sync_bytes", "B", Kind.COUNTER, "config sync bytes up and down"),
        Measurement("sync_round_trips", "1", Kind.COUNTER, "config sync round trips"),
        Measurement("retransmissions", "1", Kind.COUNTER, "CoAP retransmissions"),
        Measurement("syncs", "1", Kind.COUNTER, "config syncs attempted"),
        Measurement("syncs_failed", "1", Kind.COUNTER, "config syncs that failed"),
        Measurement("cpu_load", "%", Kind.GAUGE, "CPU load"),
        Measurement("temperature", "Cel", Kind.GAUGE, "device temperature"),
    )
}
"""The measurements the gateway knows, by SenML name (after base name
resolution, the part after the last ``/`` or ``:``)."""

LINK_METRICS: Final = ("rsrp", "sinr")
"""The link-quality series the degradation test watches."""

BAND_WIDTH: Final[Mapping[str, float]] = {"rsrp": 10.0, "sinr": 5.0}
"""Histogram bands of the link metrics (dB): a reading of RSRP -104 dBm counts
in the series ``rsrp@-110`` (the band [-110, -100)), so a group's link
quality distribution is a sum of counts, mergeable like any aggregate."""

DEGRADED: Final = "link_degraded"
"""The series that counts degradations found (one reading of 1 per flag)."""


def band(name: str, value: float) -> str | None:
    """The histogram series of a link reading, or None for other series."""
    width = BAND_WIDTH.get(name)
    if width is None:
        return None
    return f"{name}@{math.floor(value / width) * width:g}"


def resolve_time(time: float, received: float) -> float:
    """The absolute time of a resolved record time: RFC 8428 §4.5.3, a value
    below 2**28 is relative to ``received`` (negative: the past)."""
    return received + time if time < RELATIVE_TIME else time


def series_name(name: str, unit: str | None) -> tuple[str, Measurement | None]:
    """The series a record belongs to and its registered measurement, if any.

    The registry is looked up by the whole name, then by its last segment
    after ``/`` or ``:`` (a base name such as ``urn:dev:ow:10e2073a01080063:``
    prefixes every record).  A registered name in another unit than its
    registered one becomes ``name[unit]``, unregistered."""
    short = name.replace(":", "/").rsplit("/", 1)[-1]
    known = REGISTRY.get(name) or REGISTRY.get(short)
    if known is None:
        return name, None
    if unit is not None and unit != known.unit:
        return f"{known.name}[{unit}]", None
    return known.name, known


@dataclass(frozen=True, slots=True)
class Aggregate:
    """count, sum, min, max and the last reading (by time, ties by value)."""

    count: int
    total: float
    low: float
    high: float
    last: float
    last_time: float

    @classmethod
    def of(cls, value: float, time: float) -> Aggregate:
        """The aggregate of one reading."""
        return cls(1, value, value, value, value, time)

    def merge(self, other: Aggregate) -> Aggregate:
        """The aggregate of both readings' sets (associative and commutative)."""
        later = max((self.last_time, self.last), (other.last_time, other.last))
        return Aggregate(
            self.count + other.count,
            self.total + other.total,
            min(self.low, other.low),
            max(self.high, other.high),
            later[1],
            later[0],
        )

    @property
    def mean(self) -> float:
        """The mean reading."""
        return self.total / self.count


class Tally:
    """An :class:`Aggregate` being built, one reading at a time, in place: what
    ingest uses for a batch (thousands of readings into a few hundred
    buckets), where a frozen value per reading would cost an allocation each.
    ``Tally`` of some readings gives what :func:`aggregate` gives."""

    __slots__ = ("count", "high", "last", "last_time", "low", "total")

    def __init__(self, value: float, time: float) -> None:
        self.count = 1
        self.total = self.low = self.high = self.last = value
        self.last_time = time

    def add(self, value: float, time: float) -> None:
        """Count one more reading."""
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        elif value > self.high:
            self.high = value
        if time > self.last_time or (time == self.last_time and value > self.last):
            self.last, self.last_time = value, time

    def aggregate(self) -> Aggregate:
        """The readings so far as an :class:`Aggregate`."""
        return Aggregate(self.count, self.total, self.low, self.high, self.last, self.last_time)


def aggregate(readings: Iterable[tuple[float, float]]) -> Aggregate | None:
    """The aggregate of ``(value, time)`` readings; None for none."""
    result: Aggregate | None = None
    for value, time in readings:
        one = Aggregate.of(value, time)
        result = one if result is None else result.merge(one)
    return result


def bucket(time: float, width: float) -> float:
    """The start of the bucket of ``width`` seconds holding ``time`` (UTC-aligned)."""
    return math.floor(time / width) * width


def counter_delta(previous: float | None, value: float) -> float | None:
    """The increase of a cumulative counter from ``previous`` to ``value``:
    None for the first reading (no increase known yet), ``value`` itself
    after a reset (a reading below the previous one: the counter restarted
    from zero)."""
    if previous is None:
        return None
    return value - previous if value >= previous else value


@dataclass(frozen=True, slots=True)
class CusumParameters:
    """The link monitor's test: ``k`` and ``h`` in standard deviations.

    k = 1 tunes the test for a drop of two standard deviations or more (the
    reference value is half the shift to detect); h = 8 with a baseline of
    32 readings flags 0.2% of stationary devices over 300 wakes (measured on
    seeded Gaussian series, quantized to whole dB as modems report; the
    baseline's own estimation error costs more than the test's run length,
    which is why it is learnt from 32 readings, not fewer), while a drop of
    3 standard deviations is found within 4 readings on average.
    ``min_sigma`` floors the learnt deviation (RSRP and SINR are reported
    in whole dB)."""

    warmup: int = 32
    k: float = 1.0
    h: float = 8.0
    min_sigma: float = 1.0


DEFAULT_CUSUM: Final = CusumParameters()


@dataclass(frozen=True, slots=True)
class LinkMonitor:
    """The degradation test of one series of one device.

    While ``n < warmup`` it learns the baseline (Welford's mean and sum of
    squares); then each reading adds ``(mean - x) / sigma - k`` to the CUSUM
    ``score`` (floored at 0).  Past ``h`` the series is flagged: ``changed_at``
    is the estimated change point, ``flagged_at`` the reading that proved
    it, ``before`` the baseline mean; the monitor then learns the new level
    as its baseline, so a later further drop is found again."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    score: float = 0.0
    quiet_at: float | None = None
    changed_at: float | None = None
    flagged_at: float | None = None
    before: float | None = None

    @property
    def sigma(self) -> float:
        """The baseline's sample standard deviation (0 before two readings)."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    @property
    def degraded(self) -> bool:
        """Whether a drop was found."""
        return self.flagged_at is not None

    def observe(
        self, value: float, time: float, test: CusumParameters = DEFAULT_CUSUM
    ) -> LinkMonitor:
        """The monitor after one reading."""
        if self.n < test.warmup:
            n = self.n + 1
            delta = value - self.mean
            mean = self.mean + delta / n
            return replace(self, n=n, mean=mean, m2=self.m2 + delta * (value - mean),
                           quiet_at=time)  # fmt: skip
        sigma = max(self.sigma, test.min_sigma)
        score = max(0.0, self.score + (self.mean - value) / sigma - test.k)
        if score == 0.0:
            return replace(self, score=0.0, quiet_at=time)
        if score <= test.h:
            return replace(self, score=score)
        return LinkMonitor(
            changed_at=self.quiet_at, flagged_at=time, before=self.mean
        )  # learn the new level as the next baseline


def monitor_to_list(monitor: LinkMonitor) -> list[float | int | None]:
    """The monitor as a flat list (for storage)."""
    return [monitor.n, monitor.mean, monitor.m2, monitor.score, monitor.quiet_at,
            monitor.changed_at, monitor.flagged_at, monitor.before]  # fmt: skip


def monitor_from_list(items: list[float | int | None]) -> LinkMonitor:
    """The inverse of :func:`monitor_to_list`."""
    n, mean, m2, score, quiet, changed, flagged, before = items
    return LinkMonitor(int(n or 0), float(mean or 0.0), float(m2 or 0.0), float(score or 0.0),
                       _opt(quiet), _opt(changed), _opt(flagged), _opt(before))  # fmt: skip


def _opt(value: float | int | None) -> float | None:
    return None if value is None else float(value)
