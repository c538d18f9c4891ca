"""The local adaptation layer (issue 14) in CBOR: in a state report, and in
the agent's sealed record of its rule states.

In ``POST /state/{dev}`` the key ``adapt`` carries the whole layer as it
stands, sent once after each change (an empty layer, ``{}``, clears the
gateway's copy).  It goes up on a constrained link, so it is compact: the
values are grouped by the rule that set them, and the time a rule changed
is also the time of the reading that made it::

    "adapt": {"rules": [["battery-low", 1765123200, "battery_pct", 18.0, "< 20",
                         [["telemetry.interval_s", 14400],
                          ["power.mode", "saver"],
                          ["sensors.gain", 4.0, 40.0, "<= 4 (local-override policy)"]]]],
              "refused": [["security.debug_port", "battery-low", "expected no local override ..."]]}

A rule entry is ``[rule, since, input, reading, comparison, values]``
(``input`` and ``reading`` null when the rule does not know the reading); a
value is ``[path, value]``, or ``[path, value, asked, bound]`` when it was
clamped.  Either list is left out when empty.  Decoding is strict and
bounded: a malformed layer is an :class:`AdaptationError` naming the field
(a :class:`~edgecfg.wire.messages.MessageError` in a report).
"""

from __future__ import annotations

import math
from typing import Final, cast

from edgecfg.core.path import parse_path
from edgecfg.core.rules import (
    MAX_ACTIONS,
    MAX_RULES,
    Adaptation,
    Adapted,
    Reading,
    Refused,
    RuleSet,
    RulesState,
    RuleState,
    rules_from_document,
)
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.errors import EdgecfgError, PeerError
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.documents import DocumentError, TextFormat, parse_text_document

MAX_ENTRIES: Final = MAX_RULES * MAX_ACTIONS
"""The most values (and refusals) one layer may hold."""
MAX_TEXT: Final = 512


class AdaptationError(PeerError, ValueError):
    """A local adaptation layer or rule-state record that is not well formed."""


def read_rules(data: bytes, fmt: TextFormat, *, source: str = "<input>") -> RuleSet:
    """Parse a rules document (JSON, TOML or YAML, see :mod:`edgecfg.core.rules`)."""
    document = parse_text_document(data, fmt, source=source)
    if not isinstance(document, dict):
        raise DocumentError(f"{source}: a rules document must be a map at the top level")
    return rules_from_document(cast(dict[str, object], document))


# ---------------------------------------------------------------- the layer


def adaptation_to_value(adaptation: Adaptation) -> Value:
    """The layer in its wire form (see the module docstring)."""
    groups: list[Value] = []
    key: tuple[object, ...] | None = None
    values: list[Value] = []
    for adapted in adaptation.values:
        trigger = adapted.trigger
        now = (adapted.rule, adapted.since, trigger, adapted.comparison)
        if now != key:  # a new group: the values of one rule share its story
            key, values = now, []
            groups.append([
                adapted.rule, _seconds(adapted.since),
                trigger.input if trigger is not None else None,
                trigger.value if trigger is not None else None,
                adapted.comparison, values,
            ])  # fmt: skip
        item: list[Value] = [adapted.dotted, adapted.value]
        if adapted.bound is not None:
            item += [adapted.requested, adapted.bound]
        values.append(item)
    layer: Tree = {}
    if groups:
        layer["rules"] = groups
    if adaptation.refused:
        layer["refused"] = [[r.dotted, r.rule, r.reason] for r in adaptation.refused]
    return layer


def adaptation_from_value(value: Value) -> Adaptation:
    """The layer from its wire form; :class:`AdaptationError` naming the field."""
    if not is_map(value):
        raise AdaptationError("'adapt' must be a map with 'rules' and 'refused'")
    groups, refused = value.get("rules", []), value.get("refused", [])
    if not isinstance(groups, list) or not isinstance(refused, list):
        raise AdaptationError("'adapt' 'rules' and 'refused' must be lists")
    if len(groups) > MAX_RULES or len(refused) > MAX_ENTRIES:
        raise AdaptationError(f"'adapt' holds at most {MAX_RULES} rules and {MAX_ENTRIES} refusals")
    values = [adapted for group in groups for adapted in _group(group)]
    if len(values) > MAX_ENTRIES:
        raise AdaptationError(f"'adapt' holds at most {MAX_ENTRIES} values")
    return Adaptation(tuple(values), tuple(_refused(item) for item in refused))


def _group(group: Value) -> list[Adapted]:
    what = "an adapting rule"
    if not isinstance(group, list) or len(group) != 6 or not isinstance(group[5], list):
        raise AdaptationError(f"{what} is [rule, since, input, reading, comparison, values]")
    rule, since, name, reading, comparison, values = group
    rule, comparison = _text(rule, "rule", what), _text(comparison, "comparison", what)
    at = _number(since, "since", what)
    trigger: Reading | None = None
    if name is not None or reading is not None:
        trigger = Reading(_text(name, "input", what), _number(reading, "reading", what), at)
    found: list[Adapted] = []
    for item in cast(list[Value], values):
        if not isinstance(item, list) or len(item) not in (2, 4):
            raise AdaptationError(f"{what} {rule}: a value is [path, value(, asked, bound)]")
        clamped = len(item) == 4
        found.append(
            Adapted(
                _path(item[0], f"{what} {rule}"), item[1], rule, at, trigger, comparison,
                item[2] if clamped else item[1],
                _text(item[3], "bound", what) if clamped else None,
            )
        )  # fmt: skip
    return found


def _refused(item: Value) -> Refused:
    what = "a refused action"
    if not isinstance(item, list) or len(item) != 3:
        raise AdaptationError(f"{what} is [path, rule, reason]")
    return Refused(
        _path(item[0], what), _text(item[1], "rule", what), _text(item[2], "reason", what)
    )


def _seconds(value: float) -> int | float:
    """Whole seconds as an integer: shorter in CBOR than a float64."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# ---------------------------------------------------------------- the agent's record


def state_to_bytes(state: RulesState, adaptation: Adaptation, *, reported: bool) -> bytes:
    """The agent's rule record: each rule's state, the layer it made, and
    whether the gateway has been told about that layer."""
    rules: Tree = {}
    for name, rule in state.items():
        trigger: Value = None
        if rule.trigger is not None:
            trigger = [rule.trigger.input, rule.trigger.value, rule.trigger.at]
        rules[name] = [rule.active, rule.since, rule.streak, trigger]
    record: Tree = {
        "rules": rules,
        "adapt": adaptation_to_value(adaptation),
        "reported": reported,
    }
    return encode(record)


def state_from_bytes(data: bytes) -> tuple[dict[str, RuleState], Adaptation, bool]:
    """Inverse of :func:`state_to_bytes`; :class:`AdaptationError` when damaged."""
    try:
        record = decode(data)
    except PeerError as error:
        raise AdaptationError(f"rule record: {error}") from None
    if not is_map(record) or not is_map(rules := record.get("rules")):
        raise AdaptationError("rule record: a map with 'rules'")
    states: dict[str, RuleState] = {}
    for name, raw in rules.items():
        if not isinstance(raw, list) or len(raw) != 4:
            raise AdaptationError(f"rule record: rule {name} is [active, since, streak, trigger]")
        active, since, streak, trigger = raw
        if not isinstance(active, bool) or type(streak) is not int or streak < 0:
            raise AdaptationError(f"rule record: rule {name} has a bad 'active' or streak")
        if since is not None and type(since) not in (int, float):
            raise AdaptationError(f"rule record: rule {name} has a bad 'since'")
        states[name] = RuleState(
            active,
            float(cast(float, since)) if since is not None else None,
            streak,
            _reading(trigger, name),
        )
    reported = record.get("reported")
    if not isinstance(reported, bool):
        raise AdaptationError("rule record: 'reported' must be a boolean")
    return states, adaptation_from_value(record.get("adapt", {})), reported


def _reading(value: Value, name: str) -> Reading | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or any(type(v) not in (int, float) for v in value[1:])
    ):
        raise AdaptationError(f"rule record: rule {name} has a bad trigger")
    return Reading(value[0], float(cast(float, value[1])), float(cast(float, value[2])))


# ---------------------------------------------------------------- fields


def _path(value: Value, what: str) -> tuple[str, ...]:
    dotted = _text(value, "path", what)
    try:
        return parse_path(dotted)
    except EdgecfgError as error:
        raise AdaptationError(f"{what}: 'path' {error}") from None


def _text(value: Value, name: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise AdaptationError(f"{what}: '{name}' must be text of at most {MAX_TEXT} characters")
    return value


def _number(value: Value, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AdaptationError(f"{what}: '{name}' must be a finite number")
    return float(value)
