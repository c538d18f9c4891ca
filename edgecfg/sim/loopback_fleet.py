"""A simulated fleet: many agents syncing with one gateway over loopback UDP.

Used by ``edgecfg demo`` and ``edgecfg bench sync``.  Each simulated device is
a real :class:`~edgecfg.agent.sync.Agent` with its own CoAP link (its own UDP
socket) and its own state directory, so the gateway sees a real fleet.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff, SyncResult
from edgecfg.core.ids import DeviceId
from edgecfg.fleet.fleet import Fleet
from edgecfg.gateway.server import Gateway
from edgecfg.wire.senml import Record

REGIONS = ("eu/eu-west/site-1", "eu/eu-west/site-2", "eu/eu-north/site-3", "us/us-east/site-4")
"""The region groups of the demo fleet (and of ``bench sync``)."""
FUNCTIONS = ("metering", "environment", "security")
"""The function groups of the demo fleet."""


@dataclass(slots=True)
class FleetTally:
    """What a round of syncs cost, summed over the fleet."""

    syncs: int = 0
    round_trips: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {})

    def add(self, result: SyncResult) -> None:
        self.syncs += 1
        self.round_trips += result.round_trips
        self.bytes_up += result.bytes_up
        self.bytes_down += result.bytes_down
        self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1

    def per_sync(self) -> float:
        """Average bytes on the wire per sync, both directions."""
        return (self.bytes_up + self.bytes_down) / self.syncs if self.syncs else 0.0


@dataclass(slots=True)
class SimulatedDevice:
    device: str
    link: CoapLink
    agent: Agent


class SimulatedFleet:
    """Agents for ``devices``, each with a link to ``gateway`` (a running one,
    or the ``coap://`` URI of one elsewhere: another process, a balancer) and a
    state folder (and OSCORE, for a device that has a ``credentials.json`` in
    ``credentials``)."""

    def __init__(
        self,
        gateway: Gateway | str,
        devices: Sequence[str],
        folder: Path,
        *,
        ack_timeout: float = 1.0,
        concurrency: int = 32,
        seed: int = 0,
        credentials: Mapping[str, Path] | None = None,
    ) -> None:
        self.gateway = gateway if isinstance(gateway, Gateway) else None
        uri = gateway if isinstance(gateway, str) else gateway.uri
        found = credentials or {}
        self.members = [
            SimulatedDevice(
                device,
                link := CoapLink(uri, ack_timeout=ack_timeout, credentials=found.get(device)),
                Agent(
                    link,
                    LocalState(folder / device),
                    device=device,
                    backoff=Backoff(base_s=0.05, cap_s=1.0, attempts=6),
                    seed=seed + index,
                ),
            )
            for index, device in enumerate(devices)
        ]
        self._gate = asyncio.Semaphore(concurrency)
        self.rng = random.Random(seed)

    async def close(self) -> None:
        await asyncio.gather(*(member.link.close(collect=False) for member in self.members))
        gc.collect()  # once for all: aiocoap saves dropped OSCORE contexts' numbers

    def converged(self, fleet: Fleet | None = None) -> int:
        """Devices whose applied config is the current one of ``fleet`` (default:
        the gateway's)."""
        if fleet is None:
            if self.gateway is None:
                raise ValueError("converged: no gateway in this process; name a fleet")
            fleet = self.gateway.fleet
        count = 0
        for member in self.members:
            held = member.agent.state.load_config()
            if held is not None and held.etag == fleet.etag(DeviceId(member.device)):
                count += 1
        return count

    async def sync_all(self, progress: Callable[[int, int], None] | None = None) -> FleetTally:
        """Every device syncs once (own wake); ``progress(done, total)`` after each."""
        return await self._round(lambda member: member.agent.sync(), progress)

    async def telemetry_all(self, progress: Callable[[int, int], None] | None = None) -> FleetTally:
        """Every device reports telemetry; the config rides on the replies."""

        def report(member: SimulatedDevice) -> Awaitable[SyncResult]:
            reading = [Record("battery_v", round(self.rng.uniform(2.6, 3.3), 2), "V", 0.0)]
            return member.agent.telemetry(reading)

        return await self._round(report, progress)

    async def _round(
        self,
        work: Callable[[SimulatedDevice], Awaitable[SyncResult]],
        progress: Callable[[int, int], None] | None,
    ) -> FleetTally:
        tally = FleetTally()
        done = 0

        async def one(member: SimulatedDevice) -> None:
            nonlocal done
            async with self._gate:
                result = await work(member)
            tally.add(result)
            done += 1
            if progress is not None:
                progress(done, len(self.members))

        await asyncio.gather(*(one(member) for member in self.members))
        return tally
