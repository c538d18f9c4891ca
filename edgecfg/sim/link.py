"""What a lossy link does to each datagram: the pure policy behind :mod:`edgecfg.sim.proxy`.

A :class:`LinkProfile` describes a link (loss, delay and jitter, duplication,
reordering, partition windows); a :class:`LinkModel` turns it into one decision
per datagram: the delays after which the datagram is delivered, ``()`` when it
is dropped.  Nothing here touches a socket or a clock: ``now`` (seconds since
the proxy started) is an argument and randomness comes from
``random.Random`` seeded from an explicit seed, so one seed names one sequence
of decisions everywhere.

Each direction (``"up"``: client to target, ``"down"``: target to client) has
its own random stream and counters, and every decision draws the same number of
random values whatever the outcome.  So the k-th datagram of a direction gets
the same fate for a given seed however the two directions interleave in real
time, and raising ``loss`` only ever drops more of the same datagrams.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, get_args

from edgecfg.errors import UsageError

Direction = Literal["up", "down"]
"""``"up"``: client (device) to target (gateway); ``"down"``: the way back."""

DIRECTIONS: Final[tuple[Direction, ...]] = get_args(Direction)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise UsageError(f"LinkProfile.{name} must be a probability in [0, 1], got {value!r}")


def _check_duration(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise UsageError(f"LinkProfile.{name} must be finite seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How bad one link is; the same in both directions.

    - ``loss``: probability that a datagram is dropped.
    - ``delay_s`` and ``jitter_s``: a delivered datagram arrives after
      ``delay_s`` plus a uniform extra delay in ``[0, jitter_s]``.  Jitter alone
      already lets datagrams overtake each other.
    - ``duplicate``: probability that a delivered datagram arrives twice, the
      second copy ``duplicate_gap_s`` after the first.
    - ``reorder``: probability that a delivered datagram is held back for an
      extra ``reorder_hold_s``, so that datagrams sent after it overtake it.
    - ``partitions``: windows ``[start, end)`` in seconds since the proxy
      started during which every datagram is dropped, in both directions.
      ``end`` may be ``math.inf`` (the link never comes back by itself).
    - ``bursts``: windows ``[start, end)`` of bad coverage during which a
      datagram is lost with probability ``burst_loss`` instead of ``loss``
      (loss bursts, as a radio fading in and out).

    Construction validates every field and raises :class:`UsageError` naming
    the field.
    """

    loss: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    partitions: tuple[tuple[float, float], ...] = ()
    duplicate_gap_s: float = 0.001
    reorder_hold_s: float = 0.05
    bursts: tuple[tuple[float, float], ...] = ()
    burst_loss: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "burst_loss"):
            _check_probability(name, getattr(self, name))
        for name in ("delay_s", "jitter_s", "duplicate_gap_s", "reorder_hold_s"):
            _check_duration(name, getattr(self, name))
        for field in ("partitions", "bursts"):
            for index, window in enumerate(getattr(self, field)):
                _check_window(f"{field}[{index}]", window)

    def in_partition_window(self, now: float) -> bool:
        """True when ``now`` (seconds since the proxy started) lies in a partition window."""
        return any(start <= now < end for start, end in self.partitions)

    def loss_at(self, now: float) -> float:
        """The loss probability at ``now``: ``burst_loss`` in a burst window, else ``loss``."""
        if any(start <= now < end for start, end in self.bursts):
            return self.burst_loss
        return self.loss


def _check_window(name: str, window: tuple[float, float]) -> None:
    if len(window) != 2:
        raise UsageError(f"LinkProfile.{name} must be a (start, end) pair, got {window!r}")
    start, end = window
    if not (math.isfinite(start) and start >= 0.0 and end > start):
        raise UsageError(
            f"LinkProfile.{name} must satisfy 0 <= start < end (start finite), got {window!r}"
        )


PERFECT: Final = LinkProfile()
"""Delivers everything once, at once, in order."""

NB_IOT_GOOD: Final = LinkProfile(loss=0.005, delay_s=0.020, jitter_s=0.080)
"""NB-IoT at good coverage: 0.5 % loss, 60 ms ± 40 ms one way."""

NB_IOT_POOR: Final = LinkProfile(loss=0.10, delay_s=0.100, jitter_s=0.400, duplicate=0.01)
"""NB-IoT at poor coverage: 10 % loss, 300 ms ± 200 ms one way, 1 % duplicates."""

LOSSY_30: Final = LinkProfile(loss=0.30)
"""30 % loss each way and nothing else: about half of all round trips fail."""

PRESETS: Final[Mapping[str, LinkProfile]] = MappingProxyType(
    {
        "perfect": PERFECT,
        "nb-iot-good": NB_IOT_GOOD,
        "nb-iot-poor": NB_IOT_POOR,
        "lossy-30": LOSSY_30,
    }
)
"""The named profiles, by the name a command line would use."""


def preset(name: str) -> LinkProfile:
    """The profile named ``name`` in :data:`PRESETS`; :class:`UsageError` for an unknown name."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise UsageError(f"unknown link profile {name!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """Counters of one direction at one moment.

    ``sent`` counts datagrams offered to the link; ``dropped`` those it dropped,
    of which ``partitioned`` were dropped by a partition; ``duplicated`` and
    ``reordered`` count delivered datagrams that were duplicated or held back.
    """

    sent: int = 0
    dropped: int = 0
    partitioned: int = 0
    duplicated: int = 0
    reordered: int = 0

    @property
    def delivered(self) -> int:
        """Copies scheduled for delivery: every datagram not dropped, duplicates twice."""
        return self.sent - self.dropped + self.duplicated


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A snapshot of a :class:`LinkModel`'s counters, per direction."""

    up: DirectionStats
    down: DirectionStats

    def direction(self, direction: Direction) -> DirectionStats:
        """The counters of ``direction``."""
        return self.up if direction == "up" else self.down


class _Counters:
    """The mutable counters behind one :class:`DirectionStats`."""

    __slots__ = ("dropped", "duplicated", "partitioned", "reordered", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.dropped = 0
        self.partitioned = 0
        self.duplicated = 0
        self.reordered = 0

    def snapshot(self) -> DirectionStats:
        return DirectionStats(
            sent=self.sent,
            dropped=self.dropped,
            partitioned=self.partitioned,
            duplicated=self.duplicated,
            reordered=self.reordered,
        )


class LinkModel:
    """Decides the fate of each datagram crossing one link.

    Deterministic: two models built with the same profile and seed and asked
    the same questions give the same answers.  The profile can be swapped at
    run time (:meth:`set_profile`) and a manual switch (:meth:`partition`)
    overrides the profile's partition windows.  Not thread-safe; one event loop
    drives it.
    """

    __slots__ = ("_counters", "_manual_partition", "_profile", "_rngs")

    def __init__(self, profile: LinkProfile, seed: int) -> None:
        self._profile = profile
        self._manual_partition: bool | None = None
        # A stream per direction, seeded from text: str seeds hash the same in every
        # process (unlike hash()), so one seed names one sequence everywhere.
        self._rngs: dict[Direction, random.Random] = {
            direction: random.Random(f"edgecfg.sim.link:{seed}:{direction}")
            for direction in DIRECTIONS
        }
        self._counters: dict[Direction, _Counters] = {d: _Counters() for d in DIRECTIONS}

    @property
    def profile(self) -> LinkProfile:
        """The profile decisions currently follow."""
        return self._profile

    def set_profile(self, profile: LinkProfile) -> None:
        """Follow ``profile`` from the next decision on; counters and streams carry on."""
        self._profile = profile

    @property
    def manual_partition(self) -> bool | None:
        """The manual switch: ``True`` cut, ``False`` healed, ``None`` follow the windows."""
        return self._manual_partition

    def partition(self, on: bool | None) -> None:
        """Cut (``True``) or heal (``False``) the link by hand, overriding the windows.

        ``None`` hands control back to the profile's partition windows.
        """
        self._manual_partition = on

    def partitioned(self, now: float) -> bool:
        """True when a datagram at ``now`` (seconds since start) would be dropped by a partition."""
        if self._manual_partition is not None:
            return self._manual_partition
        return self._profile.in_partition_window(now)

    def decide(self, now: float, direction: Direction) -> tuple[float, ...]:
        """The fate of one datagram offered at ``now`` in ``direction``.

        Returns the delivery delays in seconds from ``now``: ``()`` when the
        datagram is dropped, one delay normally, two (ascending) for a
        duplicate.  Every delay is ``>= 0``.  Updates the counters.
        """
        if direction not in DIRECTIONS:
            raise UsageError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        rng = self._rngs[direction]
        counters = self._counters[direction]
        profile = self._profile
        # Always four draws, so datagram k's fate does not depend on earlier outcomes.
        u_loss, u_jitter, u_duplicate, u_reorder = (rng.random() for _ in range(4))
        counters.sent += 1
        if self.partitioned(now):
            counters.dropped += 1
            counters.partitioned += 1
            return ()
        if u_loss < profile.loss_at(now):
            counters.dropped += 1
            return ()
        delay = profile.delay_s + u_jitter * profile.jitter_s
        if u_reorder < profile.reorder:
            counters.reordered += 1
            delay += profile.reorder_hold_s
        if u_duplicate < profile.duplicate:
            counters.duplicated += 1
            return (delay, delay + profile.duplicate_gap_s)
        return (delay,)

    def stats(self) -> LinkStats:
        """A frozen snapshot of the counters of both directions."""
        return LinkStats(up=self._counters["up"].snapshot(), down=self._counters["down"].snapshot())
