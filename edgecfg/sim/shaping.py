"""How a real-network run shapes each device's link: the pure plan behind ``edgecfg sim network``.

A :class:`NetworkProfile` says what a radio access network is like (round
trips, rates, loss, loss bursts, outages).  From it and a seed this module
draws, with no I/O:

- :func:`link_profile`: the :class:`~edgecfg.sim.link.LinkProfile` the lossy
  proxy follows for one run (delay and jitter from the round-trip range, base
  loss, loss-burst windows and outage windows placed in the run's span);
- :func:`rates`: each device's token-bucket rates, up and down, for ``tc``'s
  ``tbf`` qdisc on its veth pair.

The split follows what the kernel here can do: it has ``tbf`` but no
``netem``, so rates are the kernel's and delay, loss, duplication,
reordering and outages are the proxy's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from edgecfg.errors import UsageError
from edgecfg.sim.link import LinkProfile


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """A radio access network, as ranges a run draws from."""

    name: str
    rtt_s: tuple[float, float]
    """Round trips (both legs through the proxy) fall uniformly-ish in this range."""
    rate_kbit: tuple[float, float]
    """Each device's rate, each direction, drawn uniformly in this range (tbf)."""
    loss: float
    """Loss of a datagram outside bursts and outages, each way."""
    burst_loss: float
    """Loss inside a burst window."""
    burst_every_s: float
    """One loss burst per this many seconds of the run (at least one)."""
    burst_s: tuple[float, float]
    outage_every_s: float
    """One outage (every datagram lost, both ways) per this many seconds (at least one)."""
    outage_s: tuple[float, float]
    duplicate: float = 0.0
    reorder: float = 0.0
    ack_timeout_s: float = 2.0
    """The CoAP ACK_TIMEOUT the agents run with on this network (RFC 7252 §4.8
    lets a deployment raise it for long round trips)."""

    def __post_init__(self) -> None:
        low, high = self.rtt_s
        if not 0.0 <= low <= high:
            raise UsageError(f"{self.name}: rtt_s must be 0 <= low <= high, got {self.rtt_s}")
        low, high = self.rate_kbit
        if not 0.0 < low <= high:
            raise UsageError(
                f"{self.name}: rate_kbit must be 0 < low <= high, got {self.rate_kbit}"
            )
        for span in (self.burst_s, self.outage_s):
            if not 0.0 < span[0] <= span[1]:
                raise UsageError(f"{self.name}: windows must be 0 < low <= high, got {span}")
        if not (self.burst_every_s > 0 and self.outage_every_s > 0 and self.ack_timeout_s > 0):
            raise UsageError(f"{self.name}: intervals and ack_timeout_s must be above 0")


NBIOT: Final = NetworkProfile(
    name="nbiot",
    rtt_s=(1.0, 10.0),
    rate_kbit=(20.0, 60.0),
    loss=0.02,
    burst_loss=0.6,
    burst_every_s=120.0,
    burst_s=(5.0, 20.0),
    outage_every_s=300.0,
    outage_s=(10.0, 30.0),
    duplicate=0.01,
    reorder=0.02,
    ack_timeout_s=10.0,
)
"""NB-IoT at mixed coverage: 1-10 s round trips, 20-60 kbit/s, 2 % loss, a
burst of 60 % loss every ~2 minutes, an outage of 10-30 s every ~5 minutes."""

LTEM: Final = NetworkProfile(
    name="ltem",
    rtt_s=(0.1, 0.6),
    rate_kbit=(100.0, 400.0),
    loss=0.01,
    burst_loss=0.3,
    burst_every_s=120.0,
    burst_s=(2.0, 10.0),
    outage_every_s=600.0,
    outage_s=(5.0, 15.0),
    duplicate=0.005,
    reorder=0.01,
    ack_timeout_s=2.0,
)
"""LTE-M: 0.1-0.6 s round trips, 100-400 kbit/s, rarer and shorter trouble."""

PROFILES: Final[Mapping[str, NetworkProfile]] = MappingProxyType({"nbiot": NBIOT, "ltem": LTEM})


def network_profile(name: str) -> NetworkProfile:
    """The profile named ``name``; :class:`UsageError` naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(
            f"unknown network profile {name!r} (known: {', '.join(PROFILES)})"
        ) from None


def _windows(
    rng: random.Random, span_s: float, every_s: float, length: tuple[float, float]
) -> tuple[tuple[float, float], ...]:
    """``max(1, span/every)`` windows placed uniformly in ``[0, span)``, sorted."""
    count = max(1, round(span_s / every_s))
    drawn: list[tuple[float, float]] = []
    for _ in range(count):
        start = rng.uniform(0.0, span_s)
        drawn.append((start, start + rng.uniform(*length)))
    return tuple(sorted(drawn))


def link_profile(profile: NetworkProfile, seed: int, span_s: float) -> LinkProfile:
    """What the proxy does for a run whose trouble lies in ``[0, span_s)``
    (seconds since the proxy started): after ``span_s`` only the base loss,
    delay, duplication and reordering remain, so a run can settle."""
    if not span_s > 0:
        raise UsageError(f"span_s must be above 0, got {span_s}")
    rng = random.Random(f"edgecfg.sim.shaping:{seed}")
    low, high = profile.rtt_s
    return LinkProfile(
        loss=profile.loss,
        delay_s=low / 2,
        jitter_s=(high - low) / 2,
        duplicate=profile.duplicate,
        reorder=profile.reorder,
        reorder_hold_s=low / 2,
        bursts=_windows(rng, span_s, profile.burst_every_s, profile.burst_s),
        burst_loss=profile.burst_loss,
        partitions=_windows(rng, span_s, profile.outage_every_s, profile.outage_s),
    )


@dataclass(frozen=True, slots=True)
class Rates:
    """One device's token-bucket rates in kbit/s."""

    up_kbit: int
    down_kbit: int


def rates(profile: NetworkProfile, seed: int, devices: int) -> list[Rates]:
    """Each device's rates, drawn in the profile's range (whole kbit/s)."""
    rng = random.Random(f"edgecfg.sim.shaping.rates:{seed}")
    return [
        Rates(round(rng.uniform(*profile.rate_kbit)), round(rng.uniform(*profile.rate_kbit)))
        for _ in range(devices)
    ]
