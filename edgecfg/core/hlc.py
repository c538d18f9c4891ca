"""Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", OPODIS 2014).

A :class:`Timestamp` pairs a physical wall time in milliseconds with a
counter that breaks ties and absorbs clocks that stand still or go backwards,
plus the node that made it.  The clock is *functional*: the caller keeps the
last timestamp it issued and passes the physical time in, so the logic stays
pure (DESIGN §2) and days of offline time are testable in milliseconds.

Guarantees, for any sequence of physical times (including ones that go
backwards):

- :func:`tick` and :func:`receive` return a timestamp strictly greater than
  ``last`` (so a node's timestamps strictly increase);
- :func:`receive` returns a timestamp strictly greater than ``remote``
  (causality: an event that saw a message is ordered after its send);
- timestamps are totally ordered: ``(wall_ms, counter, node)``;
- the wall part is the largest physical time the node has seen, its own or
  a peer's; :func:`receive` refuses a remote that is more than
  ``max_drift_ms`` ahead of the local physical clock, so one peer with a wild
  clock cannot drag every clock into the future.

The compact form for CBOR is the 3-element list ``[wall_ms, counter, node]``
(:meth:`Timestamp.to_compact`, :func:`timestamp_from_compact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from edgecfg.errors import PeerError, UsageError

DEFAULT_MAX_DRIFT_MS: Final = 5 * 60 * 1000
"""How far a remote timestamp may run ahead of the local physical clock."""

MAX_NODE_LENGTH: Final = 256
"""Longest node name (UTF-8 bytes) a compact timestamp may carry."""

_UINT64_MAX: Final = 2**64 - 1


class ClockDrift(PeerError, ValueError):
    """A remote timestamp lies further in the future than the drift bound allows."""

    def __init__(self, *, remote: Timestamp, now_ms: int, max_drift_ms: int) -> None:
        ahead = remote.wall_ms - now_ms
        super().__init__(
            f"remote timestamp {remote} is {ahead} ms ahead of the local clock "
            f"(now {now_ms} ms); at most {max_drift_ms} ms of drift is accepted"
        )
        self.remote = remote
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms


class TimestampFormatError(PeerError, ValueError):
    """A compact timestamp from outside is not ``[wall_ms, counter, node]``."""


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    """One hybrid logical clock reading; ordered by ``(wall_ms, counter, node)``."""

    wall_ms: int
    counter: int
    node: str

    def __post_init__(self) -> None:
        for name, number in (("wall_ms", self.wall_ms), ("counter", self.counter)):
            if type(number) is not int or not 0 <= number <= _UINT64_MAX:
                raise UsageError(
                    f"timestamp {name} must be an integer in [0, 2**64), got {number!r}"
                )
        if type(self.node) is not str or not _is_unicode(self.node):
            raise UsageError(f"timestamp node must be Unicode text, got {self.node!r}")

    def __str__(self) -> str:
        return f"{self.wall_ms}+{self.counter}@{self.node}"

    def to_compact(self) -> list[int | str]:
        """The compact form ``[wall_ms, counter, node]`` (model values, for CBOR)."""
        return [self.wall_ms, self.counter, self.node]

    def logical(self) -> tuple[int, int]:
        """``(wall_ms, counter)``: the order of events regardless of who made them."""
        return (self.wall_ms, self.counter)


def _is_unicode(text: str) -> bool:
    """True unless ``text`` holds lone surrogates, which CBOR text (UTF-8) cannot carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def timestamp_from_compact(value: object) -> Timestamp:
    """Inverse of :meth:`Timestamp.to_compact`; strict about shape and ranges.

    Raises :class:`TimestampFormatError` for anything else (a bool where an
    integer belongs, a negative or over-long number, a node name longer than
    :data:`MAX_NODE_LENGTH` bytes).
    """
    if not isinstance(value, list):
        raise TimestampFormatError(f"a timestamp is a list [wall_ms, counter, node], got {value!r}")
    items = cast(list[object], value)
    if len(items) != 3:
        raise TimestampFormatError(f"a timestamp has 3 elements, got {len(items)}")
    wall, counter, node = items
    for name, number in (("wall_ms", wall), ("counter", counter)):
        if type(number) is not int or not 0 <= number <= _UINT64_MAX:
            raise TimestampFormatError(
                f"timestamp {name} must be an unsigned integer, got {number!r}"
            )
    if type(node) is not str or not _is_unicode(node) or len(node.encode()) > MAX_NODE_LENGTH:
        raise TimestampFormatError(
            f"timestamp node must be text of at most {MAX_NODE_LENGTH} bytes, got {node!r}"
        )
    return Timestamp(cast(int, wall), cast(int, counter), node)


def tick(last: Timestamp | None, now_ms: int, node: str) -> Timestamp:
    """The timestamp of a local event or a send at physical time ``now_ms``.

    ``last`` is the latest timestamp this node issued or received into
    (None on first use).  The result is strictly greater than ``last``.
    """
    if last is None or now_ms > last.wall_ms:
        return Timestamp(now_ms, 0, node)
    # The physical clock stands still or went backwards: keep the wall part
    # and count events (the "l" and "c" of Kulkarni et al., Fig. 5).
    return Timestamp(last.wall_ms, last.counter + 1, node)


def receive(
    last: Timestamp | None,
    remote: Timestamp,
    now_ms: int,
    node: str,
    *,
    max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
) -> Timestamp:
    """The timestamp of receiving a message stamped ``remote`` at physical time ``now_ms``.

    The result is strictly greater than both ``last`` and ``remote``.
    Raises :class:`ClockDrift` (naming both times) when ``remote`` is more
    than ``max_drift_ms`` ahead of ``now_ms``; nothing is changed then.
    """
    if max_drift_ms < 0:
        raise UsageError(f"max_drift_ms must not be negative, got {max_drift_ms}")
    if remote.wall_ms - now_ms > max_drift_ms:
        raise ClockDrift(remote=remote, now_ms=now_ms, max_drift_ms=max_drift_ms)
    last_wall = -1 if last is None else last.wall_ms
    last_counter = -1 if last is None else last.counter
    wall = max(last_wall, remote.wall_ms, now_ms)
    if wall == last_wall == remote.wall_ms:
        counter = max(last_counter, remote.counter) + 1
    elif wall == last_wall:
        counter = last_counter + 1
    elif wall == remote.wall_ms:
        counter = remote.counter + 1
    else:
        counter = 0
    return Timestamp(wall, counter, node)
