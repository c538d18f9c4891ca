# aiocoap ships no type information; this module owns it for load tests.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUntypedBaseClass=false, reportAttributeAccessIssue=false
"""Load generation for benchmarks: the servers run in child processes, the
requests come from the parent, and each server's CPU time is read from
``/proc`` (Linux), so it is the server's own.

- :func:`run_gateway` serves a gateway database;
- :func:`run_bare` serves fixed payloads from a bare aiocoap resource, the
  least any CoAP server must spend (the baseline of ``edgecfg bench sync``);
- :func:`drive` sends GETs concurrently and measures the server's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Final

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from edgecfg.bench.measure import TICKS, cpu_seconds, free_udp_port
from edgecfg.core.admission import Budgets
from edgecfg.errors import CommandError, EdgecfgError
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway, quiet_aiocoap, settle_heap
from edgecfg.store import SQLiteStore

MIN_CPU_TICKS: Final = 20
LOAD_BUDGETS: Final = Budgets(
    peer_rate=1e9, peer_burst=1e9, memory_mib=1024.0, peer_share=1.0, peer_in_flight=256
)
"""Budgets for a gateway under a benchmark's load: one driver address stands
for a whole fleet, so no per-peer limit may shape the figures."""


class LoadFailed(EdgecfgError):
    """Requests of a load run failed (the figures would mean nothing)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One GET: a URI and the ETag the requester holds (None: none)."""

    uri: str
    etag: bytes | None = None


def run_gateway(db: str, port: int, ready: Event) -> None:
    """Child process: a gateway on ``db`` at 127.0.0.1:``port`` until killed.

    The load driver stands for many devices behind one address, so the
    per-peer budgets are lifted (LOAD_BUDGETS); every check still runs."""

    async def main() -> None:
        with SQLiteStore(db) as store:
            gateway = Gateway(store, policy=InsecurePolicy(), refresh_s=0.2, budgets=LOAD_BUDGETS)
            await gateway.start("127.0.0.1", port)
            settle_heap()  # as `gateway serve` does
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def gateway_child(db: Path) -> Generator[str]:
    """A :func:`run_gateway` child process on ``db`` while the block runs:
    its ``coap://`` URI; stopped after the block, whatever happened."""
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    port = free_udp_port()
    gateway = spawn.Process(target=run_gateway, args=(str(db), port, ready), daemon=True)
    gateway.start()
    try:
        if not ready.wait(60):
            raise CommandError("the benchmark gateway did not start")
        yield f"coap://127.0.0.1:{port}"
    finally:
        gateway.terminate()
        gateway.join(10)


class _Fixed(aiocoap.resource.Resource):
    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self.payload, content_format=60)


def run_bare(sizes: Mapping[str, int], port: int, ready: Event) -> None:
    """Child process: /NAME serves SIZE zero bytes, for every (NAME, SIZE)."""

    async def main() -> None:
        quiet_aiocoap()
        site = aiocoap.resource.Site()
        for name, size in sizes.items():
            site.add_resource((name,), _Fixed(b"\x00" * size))
        await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", port), transports=["udp6"]
        )
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass(frozen=True, slots=True)
class Load:
    """What a load run cost the server."""

    requests: int
    seconds: float
    cpu_seconds: float

    @property
    def resolved(self) -> bool:
        """Whether the CPU figure is above /proc's clock-tick resolution
        (MIN_CPU_TICKS ticks): below it a per-request figure is noise."""
        return self.cpu_seconds * TICKS >= MIN_CPU_TICKS

    @property
    def cpu_per_request_us(self) -> float:
        return 1e6 * self.cpu_seconds / self.requests

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def _message(target: Target, echo: bytes | None = None) -> aiocoap.Message:
    message = aiocoap.Message(code=Code.GET, uri=target.uri)
    if target.etag is not None:
        message.opt.etags = (target.etag,)
    message.opt.echo = echo
    return message


async def _proven(context: aiocoap.Context, target: Target) -> aiocoap.Message:
    """The response to a GET, answering the gateway's 4.01 Echo challenge once
    (aiocoap's plain-CoAP client does not): the load runs then measure a
    client whose address is proven, the guard's check included."""
    response = await context.request(_message(target)).response
    if response.code == Code.UNAUTHORIZED and response.opt.echo is not None:
        response = await context.request(_message(target, response.opt.echo)).response
    return response


async def drive(
    pid: int,
    target: Callable[[int], Target],
    *,
    requests: int,
    concurrency: int,
    max_seconds: float = 60.0,
) -> Load:
    """At least ``requests`` GETs (block-wise completed), ``concurrency`` at a
    time. CPU time comes from /proc in clock ticks (10 ms each), so a short
    run could read 0: rounds of ``requests`` repeat until the server used
    MIN_CPU_TICKS ticks or ``max_seconds`` passed. A run that still reads
    too little CPU comes back with ``resolved`` false, never as a figure."""
    quiet_aiocoap()
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        for i in range(min(concurrency, requests)):  # warm caches on both sides
            await _proven(context, target(i))
        failures = 0

        async def worker(queue: Iterator[int]) -> None:
            nonlocal failures
            for i in queue:
                response = await context.request(_message(target(i))).response
                if not response.code.is_successful():
                    failures += 1

        cpu, started = cpu_seconds(pid), time.perf_counter()
        done = 0
        while True:
            queue = iter(range(done, done + requests))
            await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
            done += requests
            elapsed, used = time.perf_counter() - started, cpu_seconds(pid) - cpu
            if used * TICKS >= MIN_CPU_TICKS or elapsed >= max_seconds or failures:
                break
    finally:
        await context.shutdown()
    if failures:
        raise LoadFailed(f"{failures} of {done} load requests failed")
    return Load(done, elapsed, used)


async def response_size(target: Target) -> int:
    """Bytes of the (block-wise completed) response payload."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        return len((await _proven(context, target)).payload)
    finally:
        await context.shutdown()
