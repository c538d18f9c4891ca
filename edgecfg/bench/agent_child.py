"""The device side of ``edgecfg bench agent``, alone in a child process.

:data:`LAUNCH` (``python -c LAUNCH URI DEVICE FOLDER ...``) starts it as a
device's process starts (:func:`~edgecfg.agent.device_process.refuse_openssl`
before anything else is imported), then syncs from
the gateway at ``URI``, records ``JOURNAL`` local changes "offline", times
local resolution, reconnects, and prints its figures as JSON.  It runs in a
process of its own so that the peak RSS it reports is what a device's agent
costs (the agent's imports and its sync), not the benchmark's fleet, store
and configuration generator (issue 16: the agent in 30 MB of RSS).  It
imports only what a device imports (the parent computes the percentiles).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Final

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff, SyncResult
from edgecfg.core.tree import flatten, get, is_map
from edgecfg.errors import CommandError

LAUNCH: Final = (
    "import sys\n"
    "from edgecfg.agent.device_process import refuse_openssl\n"
    "refuse_openssl()\n"
    "from edgecfg.bench.agent_child import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
"""The child's program: OpenSSL's modules refused before the agent loads."""


def memory_mib(*fields: str) -> list[float]:
    """``fields`` of ``/proc/self/status`` in MiB: ``VmHWM`` is this
    process's peak RSS (not ``ru_maxrss``: Linux carries that across
    ``exec``, so a child would inherit its parent's peak); ``RssAnon`` and
    ``RssFile`` split the current RSS into private memory and mapped files
    (shared libraries' pages, which other processes share and the kernel
    may drop)."""
    status = Path("/proc/self/status")
    values = {
        name: int(rest.split()[0]) / 1024
        for name, _, rest in (
            line.partition(":") for line in status.read_text("ascii").splitlines()
        )
        if name in fields
    }
    missing = [name for name in fields if name not in values]
    if missing:
        raise OSError(f"{status}: no {', '.join(missing)} line (not Linux?)")
    return [values[name] for name in fields]


async def run_device(
    uri: str, device: str, folder: Path, journal: int, samples: int, *, trace: bool
) -> dict[str, float | list[float]]:
    """Sync, go "offline" for ``journal`` local changes, time local resolution,
    reconnect: the figures and the timings (ms), the process's peak RSS taken
    after the reconnect.  With ``trace`` the reconnect's heap is traced
    (tracemalloc's own bookkeeping then inflates the RSS; run twice)."""
    async with CoapLink(uri, ack_timeout=1.0) as link:
        local = LocalOverrides(folder / "local", node=device)
        agent = Agent(
            link, LocalState(folder), device=device, local=local, backoff=Backoff(attempts=3)
        )
        await agent.sync()
        held = agent.state.load_config()
        if held is None:
            raise CommandError("the first sync brought no configuration")
        leaves = [p for p, v in flatten(held.tree).items() if isinstance(v, int | float)]
        rng = random.Random(3)
        started = time.perf_counter()
        for number in range(journal):
            path = rng.choice(leaves)
            local.set(path, number, reason="bench", now_ms=number)
        per_change_ms = 1000 * (time.perf_counter() - started) / max(1, journal)
        changes = max(1, journal)
        probe = rng.choice(leaves)
        cold: list[float] = []
        for number in range(min(samples, 200)):  # a change, then the first read
            local.set(probe, number, reason="bench", now_ms=journal + number)
            begin = time.perf_counter()
            config = agent.config
            cold.append((time.perf_counter() - begin) * 1000)
            assert config is not None and get(config, probe) == number
        warm: list[float] = []
        direct: list[float] = []
        for _ in range(samples):
            begin = time.perf_counter()
            config = agent.config
            value = get(config or {}, probe)
            warm.append((time.perf_counter() - begin) * 1000)
            begin = time.perf_counter()
            get(held.tree, probe)
            direct.append((time.perf_counter() - begin) * 1000)
            assert value is not None
        pending = len(local.pending())
        peak = float("nan")
        if trace:
            result, peak = await _traced(agent.sync())
        else:
            result = await agent.sync()  # the reconnect: journal up, merge, new config down
        merged = agent.config
        if local.pending() or merged is None or not is_map(merged):
            raise CommandError("the reconnect did not converge")
        rss_peak, rss_anon, rss_file = memory_mib("VmHWM", "RssAnon", "RssFile")
        return {
            "leaves": float(len(flatten(held.tree))),
            "config_bytes": float(len(held.cbor)),
            "journal_entries": float(pending),
            "heap_peak_mb": peak,
            "rss_peak_mb": rss_peak,
            "rss_anon_mb": rss_anon,
            "rss_file_mb": rss_file,
            "warm_ms": warm,
            "cold_ms": cold,
            "direct_ms": direct,
            "bytes_per_change": local.bytes_written / (changes + len(cold)),
            "fsyncs_per_change": local.fsyncs / (changes + len(cold)),
            "ms_per_change": per_change_ms,
            "reconnect_round_trips": float(result.round_trips),
            "reconnect_bytes_up": float(result.bytes_up),
        }


async def _traced(sync: Coroutine[None, None, SyncResult]) -> tuple[SyncResult, float]:
    """Run the reconnect ``sync`` under tracemalloc: its result and heap peak
    (MiB).  tracemalloc (with pickle) loads here, in the traced run only."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = await sync
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, traced / 2**20


def main(argv: list[str]) -> int:
    """Child entry: ``python -c LAUNCH URI DEVICE FOLDER JOURNAL SAMPLES trace|rss``."""
    uri, device, folder, journal, samples, mode = argv
    figures = asyncio.run(
        run_device(uri, device, Path(folder), int(journal), int(samples), trace=mode == "trace")
    )
    figures["modules_loaded"] = float(len(sys.modules))
    import json  # after the peak was read: the device has no use for it

    print(json.dumps(figures))
    return 0
