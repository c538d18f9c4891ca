"""The optimizer driver: objectives in the store, a panel of the fleet's
daily aggregates, and proposals (issue 17).

Objectives are a fleet-wide setting (``optimize.objectives``, the parsed
document as JSON), so every store kind keeps them without a layout of its
own.  A proposal's canary runs as an ordinary rollout whose id starts with
``opt-``; :meth:`OptimizerService.status` lists those still running as the
proposals in flight.

The panel read from a database: each device's day buckets of ``battery``
(drain = the day's highest minus lowest reading, %), ``errors`` and
``reboots`` (sums); its stratum is hardware x top region x power (battery
settings present) x link quality (the day-mean RSRP of its window below
-110 dBm, or a coverage-enhancement level >= 1: poor).  The setting each
device ran on a day is the last value of that day's ``cfg/<dotted path>``
series (e.g. ``cfg/net.uplink.interval_s``): the gateway adds it at ingest,
from the version the device's telemetry says it runs
(:meth:`~edgecfg.fleet.sync.SyncService.accept_telemetry`), and a device may
send it too; without one, its *current* effective value, which gives no
within-device evidence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, cast

import numpy as np

from edgecfg.core.ids import DeviceId
from edgecfg.core.objectives import Objective, parse_objectives
from edgecfg.core.optimize import (
    Analysis,
    Panel,
    Round,
    Search,
    Tunable,
    analyse,
    propose,
    tunables_of,
)
from edgecfg.core.path import parse_path
from edgecfg.core.telemetry import DAY
from edgecfg.core.tree import UNSET, UnsetType, Value, get, is_map
from edgecfg.errors import UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.telemetry import SETTING_SERIES

OBJECTIVES_KEY: Final = "optimize.objectives"
BATTERY_PATH: Final = parse_path("power.battery")
POOR_RSRP_DBM: Final = -110.0
WINDOW_DAYS: Final = 30
REPORTED: Final = SETTING_SERIES
"""A device that reports the value it runs of a setting as a SenML record
``cfg/<dotted path>`` gives the panel its settings history."""


class OptimizerService:
    """Objectives, analysis and proposals for the devices of ``fleet``."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.store = fleet.store

    def tunables(self) -> dict[str, Tunable]:
        schema = self.fleet.schema
        return {} if schema is None else tunables_of(schema)

    def set_objectives(self, document: Mapping[str, object]) -> tuple[Objective, ...]:
        """Check ``document`` against the schema's tunable keys and store it."""
        tunables = self.tunables()
        if not tunables:
            raise UsageError(
                "no tunable keys: load a schema that declares some ('tunable': true, with "
                "min, max and, for a discrete one, step) before setting objectives"
            )
        objectives = parse_objectives(document, tuple(tunables))
        self.store.put_setting(OBJECTIVES_KEY, json.dumps(document, sort_keys=True).encode())
        return objectives

    def objectives(self) -> tuple[Objective, ...]:
        raw = self.store.get_setting(OBJECTIVES_KEY)
        if raw is None:
            raise UsageError("no objectives yet: set them with 'edgecfg optimize objectives set'")
        return parse_objectives(cast(dict[str, object], json.loads(raw)), tuple(self.tunables()))

    def panel(self, now: float, settings: tuple[str, ...]) -> Panel:
        """The last :data:`WINDOW_DAYS` days of device aggregates (see the module docstring)."""
        since = now - WINDOW_DAYS * DAY
        records = list(self.store.iter_devices())
        index = {record.id: at for at, record in enumerate(records)}
        metrics: dict[tuple[int, int], dict[str, float]] = {}
        reported: dict[tuple[int, int], dict[str, float]] = {}
        rsrp: dict[int, list[float]] = {}
        poor_ce: set[int] = set()
        for row in self.store.telemetry_rows("device", period=DAY, since=since):
            at = index.get(DeviceId(row.key))
            if at is None:
                continue
            day = int(row.start // DAY)
            agg = row.aggregate
            setting = reported_setting(row.name, settings)
            if setting is not None:
                if agg.count:
                    reported.setdefault((at, day), {})[setting] = agg.last
                continue
            cell = metrics.setdefault((at, day), {})
            if row.name == "battery" and agg.count:
                cell["battery_drain"] = max(0.0, agg.high - agg.low)
            elif row.name in ("errors", "reboots"):
                cell[row.name] = agg.total
            elif row.name == "rsrp" and agg.count:
                rsrp.setdefault(at, []).append(agg.total / agg.count)
            elif row.name == "ce_level" and agg.count and agg.high >= 1:
                poor_ce.add(at)
        keys: list[str] = []
        strata = np.zeros(len(records), dtype=np.int64)
        values: dict[str, list[float]] = {s: [] for s in settings}
        trees: list[Value] = []
        for at, record in enumerate(records):
            tree = self.fleet.resolve(record.id).tree
            trees.append(tree)
            battery = get(tree, BATTERY_PATH) if is_map(tree) else UNSET
            power = "mains" if battery is UNSET or battery is None else "battery"
            readings = rsrp.get(at, [])
            weak = bool(readings) and sum(readings) / len(readings) < POOR_RSRP_DBM
            link = "poor" if at in poor_ce or weak else "good"
            region = record.groups.get("region", "none").split("/")[0] or "none"
            parts = (record.hardware or "unknown", region, power, link)
            key = "|".join(part.replace("|", "/") for part in parts)
            if key not in keys:
                keys.append(key)
            strata[at] = keys.index(key)
        rows = sorted(metrics)
        device = np.array([at for at, _day in rows], dtype=np.int64)
        days = np.array([day for _at, day in rows], dtype=np.int64)
        current: dict[str, list[float]] = {}
        for setting in settings:
            path = parse_path(setting)
            per_device = [_number(get(tree, path) if is_map(tree) else UNSET) for tree in trees]
            current[setting] = per_device
            values[setting] = [reported.get(row, {}).get(setting, per_device[row[0]])
                               for row in rows]  # fmt: skip
        names = ("battery_drain", "errors", "reboots")
        return Panel(
            device, days,
            {s: np.array(values[s], dtype=np.float64) for s in settings},
            {n: np.array([metrics[r].get(n, 0.0) for r in rows], dtype=np.float64) for n in names},
            strata, tuple(keys) or ("unknown|none|mains|good",),
            {s: np.array(current[s], dtype=np.float64) for s in settings},
        )  # fmt: skip

    def analysis(self, now: float) -> tuple[tuple[Objective, ...], dict[str, Tunable], Analysis]:
        objectives = self.objectives()
        tunables = self.tunables()
        settings = tuple(dict.fromkeys(s for o in objectives for s in o.settings))
        return objectives, tunables, analyse(self.panel(now, settings), settings)

    def in_flight(self) -> list[dict[str, object]]:
        """The optimizer's rollouts (id ``opt-...``) that have not ended."""
        found: list[dict[str, object]] = []
        for record in self.store.rollouts():
            if not record.id.startswith("opt-"):
                continue
            state = cast(dict[str, object], json.loads(record.state))
            if state.get("phase") in ("complete", "rolled_back"):
                continue
            plan = cast(dict[str, object], json.loads(record.plan))
            body = cast(dict[str, object], plan.get("plan", plan))
            found.append({"id": record.id, "phase": state.get("phase"),
                          "change": body.get("change")})  # fmt: skip
        return found

    def propose(self, now: float, seed: int, search: Search | None = None) -> Round:
        """This round's proposals (nothing is started: a proposal's plan goes
        to the rollout engine)."""
        objectives, tunables, analysis = self.analysis(now)
        rng = np.random.default_rng(seed)
        return propose(objectives, tunables, analysis, rng, search=search or Search(),
                       round_id=f"{int(now // DAY)}")  # fmt: skip

    def status(self, now: float) -> dict[str, object]:
        """Per objective and stratum: the current best (the value of each
        setting the stratum runs: a value replaces it only through a passed
        canary), the leading candidate (the measured value with the best
        estimate, not yet shown better), the evidence (effects on the
        objective's metric), and the optimizer's rollouts in flight."""
        objectives, _tunables, analysis = self.analysis(now)
        segments: list[dict[str, object]] = []
        for objective in objectives:
            for stratum in sorted(analysis.sizes):
                if not objective.segment.matches(stratum):
                    continue
                evidence = [
                    effect.as_json()
                    for setting in objective.settings
                    for effect in analysis.effects_of(stratum, setting, objective.metric)
                ]
                sign = 1.0 if objective.lower_is_better else -1.0
                measured = [e for e in evidence if isinstance(e["relative"], float)]
                leading = min(measured, key=lambda e: sign * cast(float, e["relative"]),
                              default=None)  # fmt: skip
                segments.append({
                    "objective": objective.name, "stratum": stratum,
                    "devices": analysis.sizes[stratum],
                    "best": {s: analysis.baselines.get((stratum, s)) for s in objective.settings},
                    "level": analysis.levels.get((stratum, objective.metric)),
                    "leading": leading,
                    "evidence": evidence,
                })  # fmt: skip
        return {
            "objectives": [o.as_json() for o in objectives],
            "segments": segments,
            "in_flight": self.in_flight(),
        }


def reported_setting(series: str, settings: tuple[str, ...]) -> str | None:
    """The setting a series reports (``cfg/<dotted path>``, after any SenML
    base name), or None."""
    short = series.replace(":", "/")
    for setting in settings:
        if short == f"{REPORTED}{setting}" or short.endswith(f"/{REPORTED}{setting}"):
            return setting
    return None


def _number(value: Value | UnsetType) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)
