"""``edgecfg bench optimize``: the optimizer's analysis on 100k devices x 30 days.

The panel is the simulator's (``edgecfg sim optimize``): daily aggregates
of a fleet where a tenth of each stratum ran a trial value of one setting
for the second half of the window, so the analysis has within-device
changes to measure.  Timed: :func:`~edgecfg.core.optimize.analyse` on the
whole panel, then one round of :func:`~edgecfg.core.optimize.propose`.  The
same-run baseline is the same analysis of a 1,000-device fleet: the ratio
of the time per device-day shows whether the cost grows with the fleet
beyond the rows it reads.  Target: the 100k analysis in <= 30 s.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from edgecfg.bench.measure import peak_rss_mib
from edgecfg.core.optimize import Panel, analyse, propose
from edgecfg.errors import CommandError
from edgecfg.sim.optimize import (
    INTERVAL,
    TIMEOUT,
    TUNABLES,
    make_fleet,
    objectives,
    observe,
    stratum_keys,
    truth,
)

TARGET_S = 30.0


@dataclass(frozen=True, slots=True)
class Figures:
    devices: int
    days: int
    rows: int
    build_s: float
    analyse_s: float
    propose_s: float
    effects: int
    proposals: int

    @property
    def us_per_row(self) -> float:
        return self.analyse_s / self.rows * 1e6


def build_panel(devices: int, days: int, seed: int) -> Panel:
    """``days`` of aggregates of ``devices`` devices; a tenth on a trial value from mid-window."""
    rng = np.random.default_rng(seed)
    fleet = make_fleet(devices, rng)
    trial = rng.random(devices) < 0.10
    which = rng.random(devices) < 0.5
    metrics: dict[str, list[np.ndarray]] = {"battery_drain": [], "errors": [], "freshness_s": []}
    settings: dict[str, list[np.ndarray]] = {INTERVAL: [], TIMEOUT: []}
    for day in range(days):
        if day == days // 2:
            fleet.interval[trial & which] = 900.0
            fleet.timeout[trial & ~which] = rng.choice(
                [4.9, 9.7, 14.6], int(np.sum(trial & ~which))
            )
        seen = observe(fleet, truth(fleet, fleet.interval, fleet.timeout), day, rng)
        for name, values in seen.items():
            metrics[name].append(values)
        settings[INTERVAL].append(fleet.interval.copy())
        settings[TIMEOUT].append(fleet.timeout.copy())
    return Panel(
        np.tile(np.arange(devices, dtype=np.int64), days),
        np.repeat(np.arange(days, dtype=np.int64), devices),
        {name: np.concatenate(rows) for name, rows in settings.items()},
        {name: np.concatenate(rows) for name, rows in metrics.items()},
        fleet.strata, stratum_keys(),
    )  # fmt: skip


def measure(devices: int, days: int, seed: int) -> Figures:
    started = time.perf_counter()
    panel = build_panel(devices, days, seed)
    built = time.perf_counter()
    analysis = analyse(panel, tuple(TUNABLES))
    analysed = time.perf_counter()
    made = propose(objectives(), TUNABLES, analysis, np.random.default_rng(seed))
    proposed = time.perf_counter()
    return Figures(devices, days, len(panel.device), built - started, analysed - built,
                   proposed - analysed, len(analysis.effects), len(made.proposals))  # fmt: skip


def run_optimize_bench(*, devices: int, days: int, seed: int, as_json: bool) -> int:
    """Measure the 1,000-device baseline, then ``devices``; print both and the verdict."""
    if devices < 16 or days < 2:
        raise CommandError(f"--devices {devices} --days {days}: expected at least 16 devices "
                           "and 2 days (a trial starts mid-window)")  # fmt: skip
    measure(200, days, seed)  # a warm-up: the first proposal imports scikit-learn
    base = measure(1000, days, seed)
    big = measure(devices, days, seed)
    ratio = big.us_per_row / base.us_per_row if base.us_per_row > 0 else float("nan")
    verdict = "met" if big.analyse_s <= TARGET_S else "MISSED"
    if as_json:
        print(json.dumps({"baseline": asdict(base), "fleet": asdict(big),
                          "per_row_ratio": round(ratio, 3), "target_s": TARGET_S,
                          "target_met": big.analyse_s <= TARGET_S,
                          "peak_rss_mib": round(peak_rss_mib(), 1)}))  # fmt: skip
        return 0
    print(f"optimizer analysis, Python {sys.version.split()[0]}, numpy {np.__version__}: "
          f"{days} days of daily aggregates, 2 tunables x 3 metrics")  # fmt: skip
    print(f"{'':<28} {'baseline':>12} {'fleet':>12} {'ratio':>7}")
    print("-" * 62)
    for name, small, large, spec in (
        ("devices", base.devices, big.devices, ",d"),
        ("device-days (rows)", base.rows, big.rows, ",d"),
        ("panel build (sim) s", base.build_s, big.build_s, ".2f"),
        ("analyse s", base.analyse_s, big.analyse_s, ".2f"),
        ("analyse us per row", base.us_per_row, big.us_per_row, ".3f"),
        ("propose s", base.propose_s, big.propose_s, ".2f"),
        ("effects estimated", base.effects, big.effects, ",d"),
        ("proposals", base.proposals, big.proposals, ",d"),
    ):  # fmt: skip
        ratio_row = float(large) / float(small) if float(small) else float("nan")
        print(f"{name:<28} {small:>12{spec}} {large:>12{spec}} {ratio_row:>7.2f}")
    print(f"analysis of {big.devices:,} devices x {days} days: {big.analyse_s:.1f} s "
          f"(target <= {TARGET_S:g} s: {verdict}); per row x{ratio:.2f} the 1,000-device "
          f"baseline's; peak RSS {peak_rss_mib():.0f} MiB")  # fmt: skip
    return 0
