# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportAttributeAccessIssue=false
"""Measurements behind ``edgecfg bench oscore`` (run in a child process each).

:func:`measure` opens a gateway database with enrolled credentials, starts a
gateway on it (start-up time and RSS), then plays OSCORE requests from a
sample of the enrolled devices through the gateway's server credentials: the
key-id lookup, unprotection with the replay check, and protection of the
response, i.e. everything OSCORE adds to a request.  The first request of a
device is *cold* (its context is read from the store, its secret unsealed and
its keys derived); the second is *warm*.  Requests are built in advance by a
device-side context, outside the timed part.

:func:`naive_lookup_us` is the same-run baseline: aiocoap's own
:class:`~aiocoap.credentials.CredentialsMap`, which tries each credential in
turn, timed for its last-enrolled peer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
from typing import Any

import aiocoap
from aiocoap import oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.message import Direction
from aiocoap.numbers.codes import Code

from edgecfg.bench.measure import percentile, rss_mib
from edgecfg.crypto import RecordCipher
from edgecfg.fleet.credentials import Secret, unseal
from edgecfg.gateway.oscore import MemoryContext, StoredContext, StoredCredentials
from edgecfg.gateway.server import Gateway
from edgecfg.store import SQLiteStore
from edgecfg.store.base import CredentialRecord, kid_for


class _Peer(MemoryContext):
    """A device's side of its context, in memory (the bench's client)."""

    def __init__(self, kid: bytes, secret: Secret) -> None:
        super().__init__(kid, b"", secret)

    def request(self, device: str) -> aiocoap.Message:
        plain = aiocoap.Message(code=Code.GET)
        plain.opt.uri_path = ("cfg", device)
        plain.direction = Direction.OUTGOING
        protected, _ = self.protect(plain)
        protected.direction = Direction.INCOMING
        return protected


def _serve_one(credentials: StoredCredentials, request: aiocoap.Message) -> None:
    """What the OSCORE site wrapper does around a resource, minus the resource."""
    context = credentials.find_oscore(oscore.verify_start(request))
    plain, request_id = context.unprotect(request)
    response = aiocoap.Message(code=Code.CONTENT, payload=b"\x00" * 64)
    response.direction = Direction.OUTGOING
    del plain
    context.context_for_response().protect(response, request_id)


def measure(db: str, key: bytes, sample: int, seed: int = 7) -> dict[str, Any]:
    """Start-up, RSS and per-request OSCORE cost on the database ``db``."""
    gc.collect()
    rss_before = rss_mib()
    started = time.perf_counter()
    store = SQLiteStore(db)
    credentials = StoredCredentials(store, RecordCipher(key))
    gateway = Gateway(store, credentials=credentials, refresh_s=0)

    async def start() -> None:
        await gateway.start("127.0.0.1", 0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    startup_ms = (time.perf_counter() - started) * 1000
    rss_started = rss_mib()

    enrolled = store.count_credentials()
    rng = random.Random(seed)
    numbers = rng.sample(range(1, enrolled + 1), min(sample, enrolled))
    cipher = RecordCipher(key)
    peers: list[tuple[_Peer, str]] = []
    for number in numbers:
        record = store.credential(kid_for(number))
        assert record is not None
        peers.append((_Peer(record.kid, unseal(cipher, record)), record.name))
    rounds: dict[str, list[float]] = {"cold": [], "warm": []}
    # One cold request per device; warm ones until ``sample`` are timed (a
    # 10-device fleet repeats its devices), so both percentiles rest on as many.
    passes = {"cold": 1, "warm": -(-sample // len(peers))}
    for phase in ("cold", "warm"):
        timings = rounds[phase]
        for _ in range(passes[phase]):
            requests = [peer.request(name) for peer, name in peers]
            for request in requests:
                t0 = time.perf_counter()
                _serve_one(credentials, request)
                timings.append((time.perf_counter() - t0) * 1e6)
    rss_loaded = rss_mib()

    async def stop() -> None:
        await gateway.stop()

    loop.run_until_complete(stop())
    loop.close()
    store.close()
    return {
        "enrolled": enrolled,
        "startup_ms": startup_ms,
        "rss_started_mib": rss_started,
        "rss_delta_mib": rss_started - rss_before,
        "rss_after_sample_mib": rss_loaded,
        "sample": len(peers),
        **{
            f"{phase}_{name}_us": value
            for phase, timings in rounds.items()
            for name, value in (
                ("p50", statistics.median(timings)),
                ("p99", percentile(timings, 0.99)),
            )
        },
    }


def naive_lookup_us(peers: int, repeats: int = 200) -> float:
    """aiocoap's CredentialsMap.find_oscore for its last peer, with ``peers`` peers."""
    secret = Secret(bytes(16), bytes(8))
    credentials = CredentialsMap()
    for number in range(1, peers + 1):
        record = CredentialRecord(kid_for(number), "device", f"d{number}", b"", 0.0)
        credentials[f":d{number}"] = StoredContext(
            record, secret, None, lambda kid, state: None, reserve=lambda kid, count: 0
        )
    header = {oscore.COSE_KID: kid_for(peers)}
    timings: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        credentials.find_oscore(header)
        timings.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(timings)


def main() -> None:
    """Child entry: ``python -m edgecfg.bench.oscore_child DB KEYHEX SAMPLE``."""
    db, key, sample = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
    result = measure(db, key, sample)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing left to release


if __name__ == "__main__":
    main()
