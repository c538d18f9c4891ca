"""Device-local adaptive rules (issue 14): the *local adaptation* layer of DESIGN §4.

A device adapts its own settings to what it measures (battery, link quality,
load) on every wake, without the gateway, within the bounds operators
declared for local changes.  Rules are declared in a *rules document* (JSON,
TOML or YAML, read by :mod:`edgecfg.wire`; :func:`rules_from_document`)::

    {"rules": [
      {"name": "battery-low",
       "when": {"input": "battery_pct", "below": 20, "exit_above": 25},
       "wakes": 1, "exit_wakes": 1, "min_dwell_s": 21600,
       "then": [{"path": "telemetry.interval_s", "scale": 4},
                {"path": "power.mode", "set": "saver"}]}]}

Semantics (all of it pure: readings and ``now`` are arguments):

- **Hysteresis.** A ``below`` rule enters when its input is below the
  threshold and leaves only once it is at or above ``exit_above`` (default:
  the threshold); an ``above`` rule mirrors it with ``exit_below``.
- **Consecutive wakes.** Entering needs ``wakes`` wakes in a row whose
  reading says "enter", leaving ``exit_wakes`` in a row that say "leave"; a
  reading that says neither resets the count.  A wake without that input
  (or a NaN) changes nothing: no count, no reset.
- **Minimum dwell.** A rule changes state (enters or leaves) at most once
  per ``min_dwell_s``: a change at ``now`` needs ``now >= since +
  min_dwell_s`` where ``since`` is the time of its previous change.  A due
  change waits for the first wake after the dwell whose reading still asks
  for it.  A clock that goes backwards only delays changes.
- **Actions** of active rules, in declaration order, ``set`` a value or
  ``scale`` the value the device has below this layer (applied config plus
  local overrides).  When two active rules name one path the earlier one
  wins (the later is listed as shadowed).
- **Bounds.** Every result is clamped to the bounds a *manual* local
  override must keep (:meth:`KeySpec.local_bounds`, the tighter of the
  schema's and the local-override policy's) and then checked with the very
  same :func:`~edgecfg.core.journal.check_override`; what still fails (a key
  without a local policy, a value outside the local enum) is refused with the
  reason, never applied.

:func:`step` advances the rule states; :func:`adapt` turns active rules into
layer values; :func:`evaluate` does both: ``(rules, state, inputs, now) ->
(state, adaptation)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal, cast

from edgecfg.core.journal import LocalOverrideRefused, check_override
from edgecfg.core.path import Path, format_path, parse_path
from edgecfg.core.schema import Schema
from edgecfg.core.tree import UNSET, Tree, UnsetType, Value, check_model, get, put_checked_value
from edgecfg.errors import EdgecfgError, UsageError, show_value

Direction = Literal["below", "above"]
INPUT_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""What an input may be called: ``battery_pct``, ``rsrp_dbm``, ``sinr_db``, ``load_pct``."""
MAX_RULES: Final = 64
MAX_ACTIONS: Final = 16
_RULE_FIELDS: Final = frozenset({"name", "when", "then", "wakes", "exit_wakes", "min_dwell_s"})
_WHEN_FIELDS: Final = frozenset({"input", "below", "above", "exit_above", "exit_below"})


class RulesError(UsageError):
    """A rules document that cannot be used; the text names the rule and field."""

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(f"rule {rule}: {message}" if rule else message)
        self.rule = rule


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class Condition:
    """``input`` below (or above) ``enter``; left again past ``exit`` (hysteresis)."""

    input: str
    direction: Direction
    enter: float
    exit: float

    def entering(self, reading: float) -> bool:
        """The reading asks an inactive rule to enter."""
        return reading < self.enter if self.direction == "below" else reading > self.enter

    def leaving(self, reading: float) -> bool:
        """The reading asks an active rule to leave."""
        return reading >= self.exit if self.direction == "below" else reading <= self.exit

    @property
    def comparison(self) -> str:
        """The entering test without its input, for explain: ``< 20``."""
        sign = "<" if self.direction == "below" else ">"
        return f"{sign} {self.enter:g}"


class _AtPath:
    """A value about one config path: its dotted text form."""

    __slots__ = ()
    path: Path

    @property
    def dotted(self) -> str:
        """The path in dotted text form."""
        return format_path(self.path)


@dataclass(frozen=True, slots=True)
class Action(_AtPath):
    """Set ``path`` to ``value``, or scale the value below the layer by ``scale``."""

    path: Path
    value: Value | UnsetType = UNSET
    scale: float | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: when ``when`` holds (see the module docstring), do ``then``."""

    name: str
    when: Condition
    then: tuple[Action, ...]
    wakes: int = 1
    exit_wakes: int = 1
    min_dwell_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in declaration order (earlier rules win a path)."""

    rules: tuple[Rule, ...] = ()


def rules_from_document(doc: Mapping[str, object]) -> RuleSet:
    """A :class:`RuleSet` from a plain document; :class:`RulesError` naming the
    rule and field for the first mistake (unknown fields, a threshold on the
    wrong side of its exit, a duplicate name, a bad path)."""
    unknown = set(doc) - {"rules", "description"}
    if unknown:
        raise RulesError(f"unknown rules-document fields {sorted(unknown)}")
    raw = doc.get("rules", [])
    if not isinstance(raw, list) or len(cast(list[object], raw)) > MAX_RULES:
        raise RulesError(f"'rules' must be a list of at most {MAX_RULES} rules")
    rules: list[Rule] = []
    for index, item in enumerate(cast(list[object], raw)):
        rule = _rule(item, index)
        if any(rule.name == other.name for other in rules):
            raise RulesError("the name is used twice", rule=rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules))


def _rule(item: object, index: int) -> Rule:
    if not isinstance(item, Mapping):
        raise RulesError(f"rule #{index + 1} must be a map")
    raw = cast(Mapping[str, object], item)
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise RulesError(f"rule #{index + 1} needs a 'name' (text, 1-64 characters)")
    unknown = set(raw) - _RULE_FIELDS
    if unknown:
        raise RulesError(f"unknown fields {sorted(unknown)}", rule=name)
    wakes = _count(raw.get("wakes", 1), "wakes", name)
    exit_wakes = _count(raw.get("exit_wakes", wakes), "exit_wakes", name)
    dwell = raw.get("min_dwell_s", 0)
    if type(dwell) not in (int, float) or not 0 <= cast(float, dwell) < math.inf:
        raise RulesError(
            f"'min_dwell_s' must be a number of seconds >= 0, got {dwell!r}", rule=name
        )
    then = raw.get("then")
    if not isinstance(then, list) or not 1 <= len(cast(list[object], then)) <= MAX_ACTIONS:
        raise RulesError(f"'then' must be a list of 1 to {MAX_ACTIONS} actions", rule=name)
    return Rule(
        name,
        _condition(raw.get("when"), name),
        tuple(_action(action, name) for action in cast(list[object], then)),
        wakes,
        exit_wakes,
        float(cast(float, dwell)),
    )


def _count(value: object, field_name: str, rule: str) -> int:
    if type(value) is not int or not 1 <= value <= 1000:
        raise RulesError(f"'{field_name}' must be a whole number of wakes, 1-1000", rule=rule)
    return value


def _threshold(value: object, field_name: str, rule: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(cast(float, value)):
        raise RulesError(f"'{field_name}' must be a finite number, got {value!r}", rule=rule)
    return float(cast(float, value))


def _condition(value: object, rule: str) -> Condition:
    if not isinstance(value, Mapping):
        raise RulesError(
            "'when' must be a map: {input, below | above, exit_above | exit_below}", rule=rule
        )
    raw = cast(Mapping[str, object], value)
    unknown = set(raw) - _WHEN_FIELDS
    if unknown:
        raise RulesError(f"unknown 'when' fields {sorted(unknown)}", rule=rule)
    name = raw.get("input")
    if not isinstance(name, str) or INPUT_NAME.fullmatch(name) is None:
        raise RulesError(f"'when.input' must match {INPUT_NAME.pattern}, got {name!r}", rule=rule)
    if ("below" in raw) == ("above" in raw):
        raise RulesError("'when' needs exactly one of 'below' and 'above'", rule=rule)
    if "below" in raw:
        if "exit_below" in raw:
            raise RulesError("a 'below' rule leaves with 'exit_above'", rule=rule)
        enter = _threshold(raw["below"], "when.below", rule)
        leave = _threshold(raw.get("exit_above", enter), "when.exit_above", rule)
        if leave < enter:
            raise RulesError(f"'exit_above' {leave:g} is below 'below' {enter:g}", rule=rule)
        return Condition(name, "below", enter, leave)
    if "exit_above" in raw:
        raise RulesError("an 'above' rule leaves with 'exit_below'", rule=rule)
    enter = _threshold(raw["above"], "when.above", rule)
    leave = _threshold(raw.get("exit_below", enter), "when.exit_below", rule)
    if leave > enter:
        raise RulesError(f"'exit_below' {leave:g} is above 'above' {enter:g}", rule=rule)
    return Condition(name, "above", enter, leave)


def _action(value: object, rule: str) -> Action:
    if not isinstance(value, Mapping):
        raise RulesError("an action must be a map: {path, set | scale}", rule=rule)
    raw = cast(Mapping[str, object], value)
    unknown = set(raw) - {"path", "set", "scale"}
    if unknown:
        raise RulesError(f"unknown action fields {sorted(unknown)}", rule=rule)
    dotted = raw.get("path")
    if not isinstance(dotted, str):
        raise RulesError("an action needs a 'path' (dotted text)", rule=rule)
    try:
        path = parse_path(dotted)
    except EdgecfgError as error:
        raise RulesError(f"action path {dotted!r}: {error}", rule=rule) from None
    if ("set" in raw) == ("scale" in raw):
        raise RulesError(f"action on {dotted} needs exactly one of 'set' and 'scale'", rule=rule)
    if "scale" in raw:
        scale = _threshold(raw["scale"], f"scale of {dotted}", rule)
        if scale <= 0:
            raise RulesError(f"'scale' of {dotted} must be above 0, got {scale:g}", rule=rule)
        return Action(path, scale=scale)
    try:
        check_model(raw["set"], path)
    except EdgecfgError as error:
        raise RulesError(f"'set' of {dotted}: {error}", rule=rule) from None
    return Action(path, cast(Value, raw["set"]))


# ---------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement: ``input`` was ``value`` at ``at`` (seconds)."""

    input: str
    value: float
    at: float


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one rule stands: active or not, since when (its last change),
    how many wakes in a row asked for the next change, and the reading
    that made the last change."""

    active: bool = False
    since: float | None = None
    streak: int = 0
    trigger: Reading | None = None


IDLE: Final = RuleState()
RulesState = Mapping[str, RuleState]
"""Rule states by rule name; a rule without one is :data:`IDLE`."""


def step_rule(rule: Rule, state: RuleState, inputs: Mapping[str, float], now: float) -> RuleState:
    """One wake of one rule (see the module docstring for the semantics)."""
    raw = inputs.get(rule.when.input)
    if raw is None or math.isnan(raw):
        return state  # nothing measured: no count, no reset
    reading, now = float(raw), float(now)  # one number type, so records compare equal
    moving = rule.when.leaving(reading) if state.active else rule.when.entering(reading)
    if not moving:
        return replace(state, streak=0) if state.streak else state
    need = rule.exit_wakes if state.active else rule.wakes
    streak = min(state.streak + 1, need)
    dwelt = state.since is None or now - state.since >= rule.min_dwell_s
    if streak >= need and dwelt:
        return RuleState(not state.active, now, 0, Reading(rule.when.input, reading, now))
    return replace(state, streak=streak)


def progress(rule: Rule, state: RuleState) -> tuple[str, float | None] | None:
    """Where a rule stands on its way to its next change, for people: a text
    (``rule r: 2 of 3 wake(s) toward entering``) and, when its dwell is what
    holds it, the time it may change; None when no wake asked for a change."""
    if not state.streak:
        return None
    need = rule.exit_wakes if state.active else rule.wakes
    toward = "leaving" if state.active else "entering"
    text = f"rule {rule.name}: {state.streak} of {need} wake(s) toward {toward}"
    held = state.streak >= need and state.since is not None
    return text, state.since + rule.min_dwell_s if held and state.since is not None else None


def step(
    rules: RuleSet, state: RulesState, inputs: Mapping[str, float], now: float
) -> dict[str, RuleState]:
    """Every rule's state after one wake with ``inputs`` at ``now``; states of
    rules no longer declared are dropped."""
    return {
        rule.name: step_rule(rule, state.get(rule.name, IDLE), inputs, now) for rule in rules.rules
    }


# ---------------------------------------------------------------- the layer


@dataclass(frozen=True, slots=True)
class Adapted(_AtPath):
    """One value of the adaptation layer and why: ``rule`` (active since
    ``since``, entered on ``trigger``, a reading that passed ``comparison``)
    asked for ``requested`` at ``path``; ``bound`` names the bound that
    clamped it (None: not clamped)."""

    path: Path
    value: Value
    rule: str
    since: float
    trigger: Reading | None
    comparison: str
    requested: Value
    bound: str | None = None

    @property
    def condition(self) -> str:
        """The reading that made the rule, for explain: ``battery_pct = 18 < 20``."""
        if self.trigger is None:
            return self.comparison
        return f"{self.trigger.input} = {self.trigger.value:g} {self.comparison}"


@dataclass(frozen=True, slots=True)
class Refused(_AtPath):
    """An action of an active rule that was not applied, and why."""

    path: Path
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Adaptation:
    """The local adaptation layer: values set by active rules, and refusals."""

    values: tuple[Adapted, ...] = ()
    refused: tuple[Refused, ...] = ()
    _by_path: dict[Path, Adapted] = field(
        default_factory=lambda: {}, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        self._by_path.update((adapted.path, adapted) for adapted in self.values)

    def at(self, path: Path) -> Adapted | None:
        """The adapted value at ``path``, or None."""
        return self._by_path.get(path)

    def lay(self, tree: Tree) -> Tree:
        """``tree`` with this layer on top (the device's effective config)."""
        for adapted in self.values:
            tree = put_checked_value(tree, adapted.path, adapted.value)
        return tree


NO_ADAPTATION: Final = Adaptation()


def adapt(rules: RuleSet, state: RulesState, base: Tree, schema: Schema) -> Adaptation:
    """The layer the active rules make over ``base`` (the config below it),
    every value clamped to and checked against the local-override policy of
    ``schema`` (see the module docstring)."""
    values: list[Adapted] = []
    refused: list[Refused] = []
    taken: dict[Path, str] = {}
    for rule in rules.rules:
        rule_state = state.get(rule.name, IDLE)
        if not rule_state.active or rule_state.since is None:
            continue
        trigger = rule_state.trigger
        for action in rule.then:
            if action.path in taken:
                reason = f"shadowed by rule {taken[action.path]}"
                refused.append(Refused(action.path, rule.name, reason))
                continue
            try:
                requested = _requested(action, base)
                value, bound = bounded(schema, action.path, requested)
            except LocalOverrideRefused as error:
                refused.append(Refused(action.path, rule.name, f"expected {error.bound}"))
                continue
            except RulesError as error:
                refused.append(Refused(action.path, rule.name, str(error)))
                continue
            taken[action.path] = rule.name
            values.append(
                Adapted(
                    action.path, value, rule.name, rule_state.since, trigger, rule.when.comparison,
                    requested, bound,
                )
            )  # fmt: skip
    return Adaptation(tuple(values), tuple(refused))


def evaluate(
    rules: RuleSet,
    state: RulesState,
    inputs: Mapping[str, float],
    now: float,
    *,
    base: Tree,
    schema: Schema,
) -> tuple[dict[str, RuleState], Adaptation]:
    """One wake: the rules' new states and the adaptation layer they make;
    :class:`RulesError` naming a reading that is not a number."""
    for name, reading in inputs.items():
        if isinstance(reading, bool) or not isinstance(reading, int | float):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise RulesError(f"reading {name!r}: expected a number, got {show_value(reading)}")
    new = step(rules, state, inputs, now)
    return new, adapt(rules, new, base, schema)


def _requested(action: Action, base: Tree) -> Value:
    if action.scale is None:
        assert not isinstance(action.value, UnsetType)
        return action.value
    below = get(base, action.path)
    if isinstance(below, bool) or not isinstance(below, int | float):
        shown = "nothing" if isinstance(below, UnsetType) else show_value(below)
        raise RulesError(f"cannot scale {action.dotted}: the config below holds {shown}")
    scaled = below * action.scale
    if not math.isfinite(scaled):
        raise RulesError(f"cannot scale {action.dotted}: {below} x {action.scale:g} is not finite")
    if isinstance(below, int):  # an integer key stays an integer
        return round(scaled)
    return scaled


def bounded(schema: Schema, path: Path, value: Value) -> tuple[Value, str | None]:
    """``value`` clamped to the local bounds of ``path`` and checked as a manual
    local override is (:func:`check_override`, which raises
    :class:`LocalOverrideRefused` when it still does not pass); returns the
    value and the bound that clamped it (None: it was within bounds)."""
    spec = schema.keys.get(path)
    bound: str | None = None
    if (
        spec is not None
        and spec.local.allowed
        and not isinstance(value, bool)
        and isinstance(value, int | float)
        and not math.isnan(value)
    ):
        (low, low_by), (high, high_by) = spec.local_bounds()
        if low is not None and value < low:
            value, bound = _like(value, low), f">= {low} ({low_by})"
        elif high is not None and value > high:
            value, bound = _like(value, high), f"<= {high} ({high_by})"
    check_override(schema, path, value)
    return value, bound


def _like(value: int | float, limit: int | float) -> int | float:
    """``limit`` in ``value``'s number type (an int key keeps ints)."""
    if isinstance(value, int):
        return math.ceil(limit) if limit > value else math.floor(limit)
    return float(limit)


def describe(adapted: Adapted) -> str:
    """What made a value, for explain: the rule, the reading, any clamp
    (the caller adds the time, ``adapted.since``, in its own format)."""
    clamp = ""
    if adapted.bound is not None:
        clamp = f", asked {show_value(adapted.requested)}, clamped to {adapted.bound}"
    on = f" on {adapted.condition}" if adapted.condition else ""
    return f"rule {adapted.rule}{on}{clamp}"
