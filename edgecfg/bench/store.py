"""Benchmark the SQLite device registry at fleet scale.

Registers N devices (three group memberships each, spread over about 300
groups) into a fresh database file in one bulk call, then measures
``get_device`` latency over random ids and a group query for one mid-sized
group.  A baseline with 1,000 devices runs in the same process; the ratio
column shows that point reads stay O(log n) as the fleet grows.

    uv run edgecfg bench store [--devices 100000] [--seed 1]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecfg.core.ids import DeviceId
from edgecfg.errors import CommandError
from edgecfg.store import DeviceRecord, SQLiteStore, blob_etag

REGIONS = ("eu", "us", "apac", "latam")
SUBREGIONS = 5  # per region
SITES = 10  # per subregion: 4 * 5 * 10 = 200 region leaf groups
HARDWARE = 50
FUNCTIONS = 50  # 200 + 50 + 50 = 300 leaf groups (+ 24 inner region groups)
QUERY_GROUP = ("region", "eu/eu-2")  # one subregion: about 1/20 of the fleet
LOOKUPS = 2_000
BASELINE_DEVICES = 1_000


@dataclass(frozen=True, slots=True)
class Figures:
    devices: int
    register_per_s: float
    get_p50_us: float
    get_p99_us: float
    group_members: int
    group_ms: float
    db_bytes: int

    @property
    def group_us_per_device(self) -> float:
        return self.group_ms * 1000 / max(self.group_members, 1)


def fleet(count: int, rng: random.Random) -> list[DeviceRecord]:
    """``count`` devices with a region, a hardware and a function group each."""
    devices: list[DeviceRecord] = []
    for n in range(count):
        region = rng.choice(REGIONS)
        site = f"{region}/{region}-{rng.randrange(SUBREGIONS)}/site-{rng.randrange(SITES)}"
        model = rng.randrange(HARDWARE)
        groups = {
            "region": site,
            "hardware": f"vendor-{model % 5}/model-{model}",
            "function": f"fn-{rng.randrange(FUNCTIONS)}",
        }
        devices.append(
            DeviceRecord(
                DeviceId(f"dev-{n:07d}"),
                groups,
                hardware=f"model-{model}",
                firmware=f"2.{rng.randrange(10)}.0",
                agent_version="0.1.0",
                last_seen=1.7e9 + rng.random() * 86_400,
                applied_etag=blob_etag(n.to_bytes(4, "big")),
            )
        )
    return devices


def timed(action: Callable[[], object]) -> float:
    """Seconds one call of ``action`` takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(path: Path, count: int, seed: int) -> Figures:
    rng = random.Random(seed)
    devices = fleet(count, rng)
    with SQLiteStore(path) as store:
        register_s = timed(lambda: store.put_devices(devices))
        if store.count_devices() != count:
            raise SystemExit(f"registered {store.count_devices()} of {count} devices")

        ids = [rng.choice(devices).id for _ in range(LOOKUPS)]
        latencies = [timed(lambda id=id: store.get_device(id)) for id in ids]
        cuts = statistics.quantiles(latencies, n=100)

        group_s = float("inf")
        members = 0
        for _ in range(3):  # best of three
            start = time.perf_counter()
            members = sum(1 for _ in store.iter_devices(group=QUERY_GROUP))
            group_s = min(group_s, time.perf_counter() - start)
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return Figures(
        devices=count,
        register_per_s=count / register_s,
        get_p50_us=cuts[49] * 1e6,
        get_p99_us=cuts[98] * 1e6,
        group_members=members,
        group_ms=group_s * 1000,
        db_bytes=size,
    )


def report(base: Figures, big: Figures) -> None:
    rows: list[tuple[str, float, float, str]] = [
        ("register (devices/s)", base.register_per_s, big.register_per_s, ",.0f"),
        ("get_device p50 (µs)", base.get_p50_us, big.get_p50_us, ".1f"),
        ("get_device p99 (µs)", base.get_p99_us, big.get_p99_us, ".1f"),
        (f"group {QUERY_GROUP[1]} members", base.group_members, big.group_members, ",.0f"),
        (f"group {QUERY_GROUP[1]} total (ms)", base.group_ms, big.group_ms, ".2f"),
        (
            f"group {QUERY_GROUP[1]} per device (µs)",
            base.group_us_per_device,
            big.group_us_per_device,
            ".1f",
        ),
        ("db file size (MiB)", base.db_bytes / 2**20, big.db_bytes / 2**20, ".2f"),
        ("db bytes per device", base.db_bytes / base.devices, big.db_bytes / big.devices, ",.0f"),
    ]
    head = f"{base.devices:,} dev"
    tail = f"{big.devices:,} dev"
    print(f"{'metric':<34} {head:>14} {tail:>14} {'ratio':>7}")
    print("-" * 72)
    for name, small, large, spec in rows:
        ratio = large / small if small else float("nan")
        print(f"{name:<34} {small:>14{spec}} {large:>14{spec}} {ratio:>7.2f}")


def run_store_bench(*, devices: int, seed: int) -> int:
    """Entry point of ``edgecfg bench store``."""
    if devices < 1:
        raise CommandError(f"--devices must be at least 1, got {devices}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-") as scratch:
        base = measure(Path(scratch) / "baseline.db", BASELINE_DEVICES, seed)
        big = measure(Path(scratch) / "fleet.db", devices, seed)
    print(
        f"SQLiteStore on Python {sys.version.split()[0]}, "
        f"{LOOKUPS:,} random get_device calls, group query best of 3"
    )
    report(base, big)
    print(f"total wall time {time.perf_counter() - started:.1f} s")
    return 0
