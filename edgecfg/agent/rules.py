"""Device-local adaptive rules on the agent (issue 14): the local adaptation
layer of DESIGN §4, evaluated on every wake without the gateway.

The device application feeds its own measurements (:meth:`LocalRules.wake`
with ``{"battery_pct": 18.0, "rsrp_dbm": -117.0}``); the pure evaluation of
:mod:`edgecfg.core.rules` steps each rule and makes the layer, clamped by the
schema's local-override policy, over the configuration below it (the applied
config plus pending local overrides).  The rule states and the layer are
sealed in the state directory (``rules.bin``, written atomically by
:class:`~edgecfg.agent.sealed_store.LocalState` with the store key), so a
restart resumes mid-dwell and mid-count, and the device runs on the adapted
values while offline.  A changed layer is marked unreported: the next
``POST /state`` carries it (``adapt``), and the gateway shows it in
``explain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgecfg.agent.sealed_store import LocalState
from edgecfg.core.rules import NO_ADAPTATION, Adaptation, RuleSet, RuleState, evaluate
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Tree
from edgecfg.wire.adaptation import AdaptationError, state_from_bytes, state_to_bytes


@dataclass(frozen=True, slots=True)
class RulesRecord:
    """What the agent keeps: each rule's state, the layer, and whether the
    gateway has been told about that layer."""

    states: Mapping[str, RuleState]
    adaptation: Adaptation
    reported: bool


EMPTY = RulesRecord({}, NO_ADAPTATION, True)


def load_record(state: LocalState) -> RulesRecord:
    """The rules' record in a state directory; a missing or damaged one is
    a fresh start (every rule idle, nothing adapted)."""
    data = state.load_rules()
    if data is None:
        return EMPTY
    try:
        states, adaptation, reported = state_from_bytes(data)
    except AdaptationError:
        return RulesRecord({}, NO_ADAPTATION, False)  # tell the gateway the layer is gone
    return RulesRecord(states, adaptation, reported)


class LocalRules:
    """The device's adaptive rules over its local state.

    ``rules`` and ``schema`` (whose local-override policy bounds every
    adapted value) are the device's declarations; the record lives in
    ``state``.
    """

    def __init__(self, state: LocalState, rules: RuleSet, schema: Schema) -> None:
        self.state = state
        self.rules = rules
        self.schema = schema
        self.record = load_record(state)

    @property
    def adaptation(self) -> Adaptation:
        """The layer in force (as of the last wake)."""
        return self.record.adaptation

    def wake(self, readings: Mapping[str, float], *, now: float, base: Tree) -> Adaptation:
        """One wake: step every rule on ``readings`` at ``now`` (wall-clock
        seconds: dwell times span reboots) and make the layer over ``base``;
        durable when this returns.  Returns the layer."""
        states, adaptation = evaluate(
            self.rules, self.record.states, readings, now, base=base, schema=self.schema
        )
        changed = adaptation != self.record.adaptation
        record = RulesRecord(states, adaptation, self.record.reported and not changed)
        if record != self.record:
            self.state.save_rules(state_to_bytes(states, adaptation, reported=record.reported))
            self.record = record
        return adaptation

    def refresh(self, base: Tree, *, now: float) -> Adaptation:
        """The layer again over a new ``base`` (a config just synced), with no
        reading: rule states stay, scaled values follow the new base."""
        return self.wake({}, now=now, base=base)

    def lay(self, tree: Tree) -> Tree:
        """``tree`` with the adaptation layer on top."""
        return self.record.adaptation.lay(tree)

    def unreported(self) -> Adaptation | None:
        """The layer, when the gateway has not been told about it yet."""
        return None if self.record.reported else self.record.adaptation

    def delivered(self, adaptation: Adaptation) -> None:
        """The gateway has recorded ``adaptation`` (unless it changed meanwhile)."""
        record = self.record
        if record.reported or adaptation != record.adaptation:
            return
        self.state.save_rules(state_to_bytes(record.states, record.adaptation, reported=True))
        self.record = RulesRecord(record.states, record.adaptation, True)
