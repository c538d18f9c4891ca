"""The local adaptation layer (issue 14) in CBOR: in a state report, and in
the agent's sealed record of its rule states.

In ``POST /state/{dev}`` the key ``adapt`` carries the whole layer as it
stands, sent once after each change (an empty layer clears the gateway's
copy)::

    "adapt": {"values": [{"path": "telemetry.interval_s", "value": 14400,
                          "rule": "battery-low", "since": 1765123200.0,
                          "when": "battery_pct = 18 < 20",
                          "input": "battery_pct", "reading": 18.0, "at": 1765123200.0,
                          "asked": 14400, "bound": "<= 86400 (local-override policy)"}],
              "refused": [{"path": "...", "rule": "...", "reason": "..."}]}

``asked`` and ``bound`` appear only when the value was clamped; ``input``,
``reading`` and ``at`` only when the rule knows the reading that made it.
Decoding is strict and bounded: a malformed layer is a
:class:`~edgecfg.wire.messages.MessageError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    values: list[Value] = []
    for adapted in adaptation.values:
        item: Tree = {
            "path": adapted.dotted,
            "value": adapted.value,
            "rule": adapted.rule,
            "since": adapted.since,
            "when": adapted.condition,
        }
        if adapted.trigger is not None:
            item |= {
                "input": adapted.trigger.input,
                "reading": adapted.trigger.value,
                "at": adapted.trigger.at,
            }
        if adapted.bound is not None:
            item |= {"asked": adapted.requested, "bound": adapted.bound}
        values.append(item)
    refused: list[Value] = [
        {"path": item.dotted, "rule": item.rule, "reason": item.reason}
        for item in adaptation.refused
    ]
    return {"values": values, "refused": refused}


def adaptation_from_value(value: Value) -> Adaptation:
    """The layer from its wire form; :class:`AdaptationError` naming the field."""
    if not is_map(value):
        raise AdaptationError("'adapt' must be a map with 'values' and 'refused'")
    values, refused = value.get("values", []), value.get("refused", [])
    if not isinstance(values, list) or not isinstance(refused, list):
        raise AdaptationError("'adapt' 'values' and 'refused' must be lists")
    if len(values) > MAX_ENTRIES or len(refused) > MAX_ENTRIES:
        raise AdaptationError(f"'adapt' holds at most {MAX_ENTRIES} values and refusals")
    return Adaptation(
        tuple(_adapted(item) for item in values), tuple(_refused(item) for item in refused)
    )


def _adapted(item: Value) -> Adapted:
    what = "an adapted value"
    if not is_map(item) or "value" not in item:
        raise AdaptationError(f"{what} is a map with a 'value'")
    since = _number(item, "since", what)
    trigger: Reading | None = None
    if "input" in item:
        trigger = Reading(
            _text(item, "input", what), _number(item, "reading", what), _number(item, "at", what)
        )
    clamped = "bound" in item
    return Adapted(
        _path(item, what),
        item["value"],
        _text(item, "rule", what),
        since,
        trigger,
        _text(item, "when", what),
        item.get("asked") if clamped else item["value"],
        _text(item, "bound", what) if clamped else None,
    )


def _refused(item: Value) -> Refused:
    what = "a refused action"
    if not is_map(item):
        raise AdaptationError(f"{what} is a map")
    return Refused(_path(item, what), _text(item, "rule", what), _text(item, "reason", what))


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


def _path(item: Mapping[str, Value], what: str) -> tuple[str, ...]:
    dotted = _text(item, "path", what)
    try:
        return parse_path(dotted)
    except EdgecfgError as error:
        raise AdaptationError(f"{what}: 'path' {error}") from None


def _text(item: Mapping[str, Value], key: str, what: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise AdaptationError(f"{what}: '{key}' must be text of at most {MAX_TEXT} characters")
    return value


def _number(item: Mapping[str, Value], key: str, what: str) -> float:
    value = item.get(key)
    if type(value) not in (int, float) or not math.isfinite(cast(float, value)):
        raise AdaptationError(f"{what}: '{key}' must be a finite number")
    return float(cast(float, value))
