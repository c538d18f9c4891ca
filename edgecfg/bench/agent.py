"""``edgecfg bench agent``: what the agent costs a device (issue 6).

A gateway runs in a child process on a free-form fleet whose global layer is
a ``--leaves``-leaf configuration.  The agent, in this process, syncs it,
records ``--journal`` local changes while "offline", and reconnects.
Printed, with the targets:

- heap (tracemalloc peak) during the reconnect sync that carries the journal
  (target <= 5 MB), and the process's peak RSS;
- local resolution (the config the device runs on, pending overrides on top)
  p50/p99 warm, and on the first read after a change (target p99 <= 0.25 ms
  for both);
- bytes and fsyncs written per local change (the journal's durability price);

next to a baseline from the same run: reading one value from the applied
configuration tree directly.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.local_state import LocalState
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.bench.load import gateway_child
from edgecfg.bench.measure import percentile
from edgecfg.core.ids import DeviceId
from edgecfg.core.layers import GLOBAL, layer_from_parts
from edgecfg.core.tree import flatten, get, is_map
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.configs import generate_config
from edgecfg.store import DeviceRecord, SQLiteStore

HEAP_TARGET_MB = 5.0
RESOLVE_TARGET_MS = 0.25


def _prepare(db: Path, leaves: int) -> None:
    config = generate_config(5, leaves=leaves, shape="mixed")
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        fleet.write_layer(GLOBAL, layer_from_parts(config), author="bench", message="", now=1.0)
        fleet.add_device(DeviceRecord(DeviceId("bench-agent"), {}))


async def _run(uri: str, folder: Path, journal: int, samples: int) -> dict[str, float]:
    async with CoapLink(uri, ack_timeout=1.0) as link:
        local = LocalOverrides(folder / "local", node="bench-agent")
        agent = Agent(
            link, LocalState(folder), device="bench-agent", local=local, backoff=Backoff(attempts=3)
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
        tracemalloc.start()
        result = await agent.sync()  # the reconnect: journal up, merge, new config down
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        merged = agent.config
        if local.pending() or merged is None or not is_map(merged):
            raise CommandError("the reconnect did not converge")
        return {
            "leaves": float(len(flatten(held.tree))),
            "config_bytes": float(len(held.cbor)),
            "journal_entries": float(pending),
            "heap_peak_mb": peak / 2**20,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "resolve_warm_p50_ms": statistics.median(warm),
            "resolve_warm_p99_ms": percentile(warm, 0.99),
            "resolve_cold_p50_ms": statistics.median(cold),
            "resolve_cold_p99_ms": percentile(cold, 0.99),
            "baseline_direct_read_p99_ms": percentile(direct, 0.99),
            "bytes_per_change": local.bytes_written / (changes + len(cold)),
            "fsyncs_per_change": local.fsyncs / (changes + len(cold)),
            "ms_per_change": per_change_ms,
            "reconnect_round_trips": float(result.round_trips),
            "reconnect_bytes_up": float(result.bytes_up),
        }


def run_agent_bench(*, leaves: int, journal: int, samples: int, as_json: bool = False) -> int:
    """Entry point of ``edgecfg bench agent``."""
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-agent-") as tmp:
        folder = Path(tmp)
        db = folder / "fleet.db"
        _prepare(db, leaves)
        with gateway_child(db) as uri:
            figures = asyncio.run(_run(uri, folder / "agent", journal, samples))
    heap_ok = figures["heap_peak_mb"] <= HEAP_TARGET_MB
    resolve_ok = figures["resolve_warm_p99_ms"] <= RESOLVE_TARGET_MS
    changed_ok = figures["resolve_cold_p99_ms"] <= RESOLVE_TARGET_MS
    if as_json:
        verdicts = {
            "heap": heap_ok,
            "local_resolution": resolve_ok,
            "local_resolution_after_change": changed_ok,
        }
        print(json.dumps({"figures": figures, "pass": verdicts}, indent=2, sort_keys=True))
        return 0
    print(
        f"agent with a {figures['leaves']:.0f}-leaf config ({figures['config_bytes']:.0f} B CBOR) "
        f"and {figures['journal_entries']:.0f} pending journal entries"
    )
    rows = [
        ("heap peak during the reconnect sync (MB)", figures["heap_peak_mb"]),
        ("process peak RSS (MB)", figures["rss_peak_mb"]),
        ("local resolution, warm p50 / p99 (ms)", figures["resolve_warm_p50_ms"]),
        ("", figures["resolve_warm_p99_ms"]),
        ("local resolution after a change p50 / p99 (ms)", figures["resolve_cold_p50_ms"]),
        ("", figures["resolve_cold_p99_ms"]),
        (
            "baseline: direct read of the applied tree p99 (ms)",
            figures["baseline_direct_read_p99_ms"],
        ),
        ("journal bytes per local change", figures["bytes_per_change"]),
        ("fsyncs per local change", figures["fsyncs_per_change"]),
        ("ms per local change (append + fsync)", figures["ms_per_change"]),
        ("reconnect: round trips / bytes up", figures["reconnect_round_trips"]),
        ("", figures["reconnect_bytes_up"]),
    ]
    for label, value in rows:
        print(f"  {label:<52} {value:>10.4f}")
    print()
    print(f"{'PASS' if heap_ok else 'MISS'}  heap <= {HEAP_TARGET_MB} MB: "
          f"{figures['heap_peak_mb']:.2f} MB")  # fmt: skip
    print(f"{'PASS' if resolve_ok else 'MISS'}  local resolution p99 <= {RESOLVE_TARGET_MS} ms: "
          f"{figures['resolve_warm_p99_ms']:.4f} ms")  # fmt: skip
    print(f"{'PASS' if changed_ok else 'MISS'}  the same, first read after a change: "
          f"{figures['resolve_cold_p99_ms']:.4f} ms")  # fmt: skip
    return 0
