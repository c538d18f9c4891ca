"""The fleet optimizer's objectives, as an operator declares them.

Pure: the input is the parsed document (TOML read by the CLI), a mapping
with a list of ``[[objective]]`` tables::

    [[objective]]
    name = "battery-life"
    segment = "power/battery"          # "*", "dimension/value" or a list of them (all must hold)
    minimise = "battery_drain"         # or maximise = "delivered"
    settings = ["net.uplink.interval_s", "net.coap.ack_timeout_s"]   # tunables it may change
    constraints = [
        "net.uplink.interval_s <= 900",       # a bound on a setting (freshness)
        "errors not worse than +10%",         # a metric relative to the baseline setting
        "battery_life_years >= 5",            # a metric's level
    ]
    guardrails = ["battery_drain", "errors", "reboots"]   # the canary's gates

Several objectives may name one segment: they are tried in their order,
and a setting claimed by an earlier objective in a stratum is not changed
by a later one while the earlier's proposal is in flight.  Unknown keys,
metrics, settings or guardrails are errors that name what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast

from edgecfg.errors import UsageError

Goal = Literal["minimise", "maximise"]
Op = Literal["<=", ">=", "<", ">"]

METRICS: Final[Mapping[str, bool]] = {
    # metric -> lower is better
    "battery_drain": True,  # percent of the battery per day
    "errors": True,  # errors per device-day
    "reboots": True,  # reboots per device-day
    "freshness_s": True,  # age of the newest delivered reading, seconds (mean over the day)
    "sync_latency_s": True,  # seconds from a new version to its confirmation
    "delivered": False,  # share of readings delivered
}
"""The metrics an objective may name (daily aggregates per device), and
whether lower is better."""

DERIVED: Final[Mapping[str, str]] = {"battery_life_years": "battery_drain"}
"""Metrics computed from another: ``battery_life_years = 100 / (drain x 365.25)``."""

DIMENSIONS: Final = ("hardware", "region", "power", "link")
"""The strata of the analysis, in the order of a stratum key ``hw|region|power|link``."""

_KEYS: Final = frozenset(
    {"name", "segment", "minimise", "maximise", "settings", "constraints", "guardrails"}
)
_GUARDRAILS: Final = frozenset({"battery_drain", "errors", "reboots", "checkin", "freshness_s"})
_BOUND: Final = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_RELATIVE: Final = re.compile(
    r"^\s*([A-Za-z_][\w.]*)\s+not\s+worse\s+than\s+\+?(\d+(?:\.\d+)?)\s*%\s*$"
)


def battery_life_years(drain_pct_per_day: float) -> float:
    """Years a battery lasts at ``drain_pct_per_day`` percent a day."""
    return math.inf if drain_pct_per_day <= 0 else 100.0 / (drain_pct_per_day * 365.25)


@dataclass(frozen=True, slots=True)
class Constraint:
    """``setting``: a bound on a tunable's value; ``level``: a bound on a
    metric's predicted level; ``relative``: the metric may not get worse
    than ``value`` (a fraction, 0.1 = +10 %) against the baseline setting."""

    kind: Literal["setting", "level", "relative"]
    name: str
    op: Op
    value: float
    text: str

    def holds(self, quantity: float) -> bool:
        """Whether ``quantity`` (a setting's value, a level, a relative change) satisfies it."""
        if self.op == "<=":
            return quantity <= self.value
        if self.op == ">=":
            return quantity >= self.value
        if self.op == "<":
            return quantity < self.value
        return quantity > self.value


@dataclass(frozen=True, slots=True)
class Segment:
    """A fleet segment: every ``dimension/value`` condition must hold (none: all devices)."""

    conditions: tuple[tuple[str, str], ...] = ()

    def matches(self, stratum: str) -> bool:
        """Whether the stratum key ``hw|region|power|link`` lies in the segment."""
        values: dict[str, str] = dict(zip(DIMENSIONS, stratum.split("|"), strict=False))
        return all(values.get(dimension) == value for dimension, value in self.conditions)

    @property
    def text(self) -> str:
        return "+".join(f"{d}/{v}" for d, v in self.conditions) or "*"


@dataclass(frozen=True, slots=True)
class Objective:
    """One objective of one segment."""

    name: str
    segment: Segment
    goal: Goal
    metric: str
    settings: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()
    guardrails: tuple[str, ...] = ("battery_drain", "errors", "reboots")

    @property
    def lower_is_better(self) -> bool:
        return METRICS[self.metric] == (self.goal == "minimise")

    def setting_allowed(self, setting: str, value: float) -> bool:
        """Whether every setting constraint on ``setting`` holds at ``value``."""
        return all(
            c.holds(value) for c in self.constraints if c.kind == "setting" and c.name == setting
        )

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "segment": self.segment.text,
            self.goal: self.metric,
            "settings": list(self.settings),
            "constraints": [c.text for c in self.constraints],
            "guardrails": list(self.guardrails),
        }


def parse_segment(value: object, where: str) -> Segment:
    """``"*"``, ``"power/battery"`` or a list of such conditions."""
    items = cast(list[object], value) if isinstance(value, list) else [value]
    conditions: list[tuple[str, str]] = []
    for item in items:
        if item == "*":
            continue
        if not isinstance(item, str) or item.count("/") != 1:
            raise UsageError(
                f"{where} segment: expected '*' or 'dimension/value' (dimensions: "
                f"{', '.join(DIMENSIONS)}), got {item!r}"
            )
        dimension, wanted = item.split("/")
        if dimension not in DIMENSIONS or not wanted:
            raise UsageError(
                f"{where} segment {item!r}: unknown dimension {dimension!r}; "
                f"known: {', '.join(DIMENSIONS)}"
            )
        conditions.append((dimension, wanted))
    return Segment(tuple(conditions))


def parse_constraint(text: str, settings: Sequence[str], where: str) -> Constraint:
    """One constraint from its text (see the module docstring for the three forms)."""
    relative = _RELATIVE.match(text)
    if relative is not None:
        name = relative.group(1)
        if name not in METRICS:
            raise UsageError(f"{where} constraint {text!r}: unknown metric {name!r}; "
                             f"known: {', '.join(sorted(METRICS))}")  # fmt: skip
        return Constraint("relative", name, "<=", float(relative.group(2)) / 100, text)
    bound = _BOUND.match(text)
    if bound is None:
        raise UsageError(
            f"{where} constraint {text!r}: expected 'NAME <= NUMBER' (or >=, <, >) or "
            f"'METRIC not worse than +N%'"
        )
    name, op, value = bound.group(1), cast(Op, bound.group(2)), float(bound.group(3))
    if name in settings:
        return Constraint("setting", name, op, value, text)
    if name in METRICS or name in DERIVED:
        return Constraint("level", name, op, value, text)
    raise UsageError(
        f"{where} constraint {text!r}: {name!r} is neither a setting of this objective "
        f"({', '.join(settings)}) nor a metric ({', '.join(sorted({*METRICS, *DERIVED}))})"
    )


def parse_objectives(
    document: Mapping[str, object], tunables: Sequence[str] | None = None
) -> tuple[Objective, ...]:
    """The objectives of a document; ``tunables``: the settings the schema
    declares tunable (None: not checked here)."""
    unknown = sorted(set(document) - {"objective"})
    if unknown:
        raise UsageError(f"objectives: unknown top-level keys {unknown}; expected [[objective]]")
    tables = document.get("objective")
    if not isinstance(tables, list) or not tables:
        raise UsageError("objectives: expected at least one [[objective]] table")
    objectives: list[Objective] = []
    for index, raw in enumerate(cast(list[object], tables)):
        where = f"[[objective]] #{index + 1}"
        if not isinstance(raw, Mapping):
            raise UsageError(f"{where}: expected a table")
        objectives.append(_objective(cast(Mapping[str, object], raw), where, tunables))
    names = [objective.name for objective in objectives]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"objectives: names used twice: {twice}")
    return tuple(objectives)


def _objective(raw: Mapping[str, object], where: str, tunables: Sequence[str] | None) -> Objective:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; known: {sorted(_KEYS)}")
    name = raw.get("name", where)
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where} name: expected text")
    where = f"[[objective]] {name!r}"
    goals = [goal for goal in ("minimise", "maximise") if goal in raw]
    if len(goals) != 1:
        raise UsageError(f"{where}: exactly one of 'minimise' or 'maximise' is needed")
    goal = cast(Goal, goals[0])
    metric = raw[goal]
    if not isinstance(metric, str) or metric not in METRICS:
        raise UsageError(f"{where} {goal}: unknown metric {metric!r}; "
                         f"known: {', '.join(sorted(METRICS))}")  # fmt: skip
    settings = _texts(raw.get("settings"), f"{where} settings")
    if not settings:
        raise UsageError(f"{where} settings: name at least one tunable setting")
    if tunables is not None:
        for setting in settings:
            if setting not in tunables:
                raise UsageError(
                    f"{where} settings: {setting!r} is not declared tunable in the schema; "
                    f"tunable: {', '.join(tunables) or 'none'}"
                )
    constraints = tuple(
        parse_constraint(text, settings, where)
        for text in _texts(raw.get("constraints", []), f"{where} constraints")
    )
    guardrails = _texts(raw.get("guardrails", ["battery_drain", "errors", "reboots"]),
                        f"{where} guardrails")  # fmt: skip
    for guardrail in guardrails:
        if guardrail not in _GUARDRAILS:
            raise UsageError(f"{where} guardrails: unknown {guardrail!r}; "
                             f"known: {', '.join(sorted(_GUARDRAILS))}")  # fmt: skip
    if not guardrails:
        raise UsageError(f"{where} guardrails: a canary needs at least one guardrail")
    segment = parse_segment(raw.get("segment", "*"), where)
    return Objective(name, segment, goal, metric, tuple(settings), constraints, tuple(guardrails))


def _texts(value: object, where: str) -> list[str]:
    items = cast(list[object], value) if isinstance(value, list) else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise UsageError(f"{where}: expected a list of strings, got {value!r}")
    return [str(item) for item in items]
