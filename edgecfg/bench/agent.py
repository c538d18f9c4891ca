"""``edgecfg bench agent``: what the agent costs a device (issue 6).

A gateway runs in a child process on a free-form fleet whose global layer is
a ``--leaves``-leaf configuration.  The agent, in a child process of its own
(:mod:`edgecfg.bench.agent_child`, which loads only what a device loads),
syncs it, records ``--journal`` local changes while "offline", and
reconnects.  Printed, with the targets:

- heap (tracemalloc peak) during the reconnect sync that carries the journal
  (target <= 5 MB), and the agent process's peak RSS, reconnect included
  (target <= 30 MB, issue 16);
- local resolution (the config the device runs on, pending overrides on top)
  p50/p99 warm, and on the first read after a change (target p99 <= 0.25 ms
  for both);
- bytes and fsyncs written per local change (the journal's durability price);

next to a baseline from the same run: reading one value from the applied
configuration tree directly.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgecfg.bench.agent_child import LAUNCH
from edgecfg.bench.load import gateway_child
from edgecfg.bench.measure import percentile
from edgecfg.core.ids import DeviceId
from edgecfg.core.layers import GLOBAL, layer_from_parts
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.configs import generate_config
from edgecfg.store import DeviceRecord, SQLiteStore

HEAP_TARGET_MB = 5.0
RSS_TARGET_MB = 30.0
"""Issue 16: the agent's process fits a 64 MB device with room for its application."""
RESOLVE_TARGET_MS = 0.25
DEVICES = ("bench-agent", "bench-agent-rss", "bench-agent-oo-compile", "bench-agent-oo")
"""One device (one state) per run: traced, untraced (RSS), the run that
compiles the ``-OO`` bytecode, untraced on that bytecode."""


def _prepare(db: Path, leaves: int) -> None:
    config = generate_config(5, leaves=leaves, shape="mixed")
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        fleet.write_layer(GLOBAL, layer_from_parts(config), author="bench", message="", now=1.0)
        for device in DEVICES:
            fleet.add_device(DeviceRecord(DeviceId(device), {}))


def _device(
    uri: str,
    device: str,
    folder: Path,
    *,
    journal: int,
    samples: int,
    mode: str,
    pycache: Path,
    optimize: bool = False,
) -> dict[str, Any]:
    """The device side, in a child process of its own (its RSS is the agent's);
    with ``optimize``, on bytecode compiled by ``python -OO`` (no docstrings,
    no asserts), as a device's image ships it."""
    # A device runs compiled bytecode: let the children write theirs (to a
    # folder of the bench's) even where PYTHONDONTWRITEBYTECODE is set, or
    # every import would compile from source and count the compiler's memory.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    result = subprocess.run(
        [sys.executable, *(["-OO"] if optimize else []), "-c", LAUNCH, uri, device, str(folder),
         str(journal),
         str(samples), mode],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )  # fmt: skip
    if result.returncode != 0:
        raise CommandError(f"the bench's agent process failed: {result.stderr.strip()[-800:]}")
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def _figures(uri: str, folder: Path, journal: int, samples: int) -> dict[str, float]:
    """The device run on fresh state each time: traced for the heap, then
    untraced for the RSS (tracemalloc's bookkeeping would count as the
    agent's) on the bytecode the first run compiled; then the same on
    ``-OO`` bytecode, compiled by a short run first (a device's image ships
    it compiled: the compiler's memory is not the agent's)."""
    pycache = folder / "pycache"
    runs = (
        ("trace", False, journal, samples),
        ("rss", False, journal, samples),
        ("rss", True, 8, 8),  # compiles the -OO bytecode, on the same code paths
        ("rss", True, journal, samples),
    )
    raw, untraced, _, optimized = (
        _device(
            uri,
            device,
            folder / device,
            journal=changes,
            samples=count,
            mode=mode,
            pycache=pycache,
            optimize=optimize,
        )
        for device, (mode, optimize, changes, count) in zip(DEVICES, runs, strict=True)
    )
    warm: list[float] = raw.pop("warm_ms")
    cold: list[float] = raw.pop("cold_ms")
    direct: list[float] = raw.pop("direct_ms")
    figures: dict[str, float] = {
        **raw,
        "rss_peak_mb": optimized["rss_peak_mb"],
        "rss_anon_mb": optimized["rss_anon_mb"],
        "rss_file_mb": optimized["rss_file_mb"],
        "rss_peak_docstrings_mb": untraced["rss_peak_mb"],
        "rss_peak_traced_mb": raw["rss_peak_mb"],
        "resolve_warm_p50_ms": statistics.median(warm),
        "resolve_warm_p99_ms": percentile(warm, 0.99),
        "resolve_cold_p50_ms": statistics.median(cold),
        "resolve_cold_p99_ms": percentile(cold, 0.99),
        "baseline_direct_read_p99_ms": percentile(direct, 0.99),
    }
    return figures


def run_agent_bench(*, leaves: int, journal: int, samples: int, as_json: bool = False) -> int:
    """Entry point of ``edgecfg bench agent``."""
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-agent-") as tmp:
        folder = Path(tmp)
        db = folder / "fleet.db"
        _prepare(db, leaves)
        with gateway_child(db) as uri:
            figures = _figures(uri, folder, journal, samples)
    heap_ok = figures["heap_peak_mb"] <= HEAP_TARGET_MB
    rss_ok = figures["rss_peak_mb"] <= RSS_TARGET_MB
    resolve_ok = figures["resolve_warm_p99_ms"] <= RESOLVE_TARGET_MS
    changed_ok = figures["resolve_cold_p99_ms"] <= RESOLVE_TARGET_MS
    if as_json:
        verdicts = {
            "heap": heap_ok,
            "rss": rss_ok,
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
        ("agent process peak RSS, reconnect included (MB)", figures["rss_peak_mb"]),
        ("  at the end: private (RssAnon) (MB)", figures["rss_anon_mb"]),
        ("  at the end: mapped files (RssFile) (MB)", figures["rss_file_mb"]),
        ("  the same peak on bytecode with docstrings (MB)", figures["rss_peak_docstrings_mb"]),
        ("modules the agent process loaded", figures["modules_loaded"]),
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
    print(f"{'PASS' if rss_ok else 'MISS'}  agent process RSS <= {RSS_TARGET_MB} MB: "
          f"{figures['rss_peak_mb']:.1f} MB")  # fmt: skip
    print(f"{'PASS' if resolve_ok else 'MISS'}  local resolution p99 <= {RESOLVE_TARGET_MS} ms: "
          f"{figures['resolve_warm_p99_ms']:.4f} ms")  # fmt: skip
    print(f"{'PASS' if changed_ok else 'MISS'}  the same, first read after a change: "
          f"{figures['resolve_cold_p99_ms']:.4f} ms")  # fmt: skip
    return 0
