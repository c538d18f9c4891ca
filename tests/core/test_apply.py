"""The apply/probe/commit machine: its table, and its laws over any run of
applies, probe results, reboots (also mid-action) and deadlines."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.apply import (
    DEFAULT_DEADLINE_S,
    MAX_UNREPORTED,
    TRANSITIONS,
    Applied,
    ApplyAction,
    ApplyConfig,
    ApplyError,
    ApplyEvent,
    ApplyFailed,
    ApplyOutcome,
    ApplyState,
    Begin,
    Booted,
    Confirm,
    Confirmed,
    Delivered,
    Interrupted,
    Probed,
    ProbeResult,
    Revert,
    RevertDone,
    RunProbes,
    Tick,
    Trial,
    WriteCandidate,
    Written,
    accepts,
    step,
)
from edgecfg.core.ids import ETag

PREVIOUS = ETag(b"P" * 8)
CANDIDATE = ETag(b"C" * 8)
OK = ProbeResult("reachability", True, "2.03")
MAX_CUTS = 4
CUT_OFF = ProbeResult("reachability", False, "connection refused")


def run(state: ApplyState, *events: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    actions: list[ApplyAction] = []
    for event in events:
        state, actions = step(state, event)
    return state, actions


def test_a_healthy_candidate_is_written_applied_probed_and_confirmed() -> None:
    state, actions = step(ApplyState(), Begin(10.0, CANDIDATE, PREVIOUS))
    assert (state.phase, actions) == ("staged", [WriteCandidate(CANDIDATE)])
    state, actions = step(state, Written(11.0, 7))
    assert (state.phase, actions) == ("applying", [ApplyConfig(CANDIDATE)])
    state, actions = step(state, Applied(12.0))
    assert (state.phase, actions) == ("probing", [RunProbes(CANDIDATE)])
    state, actions = step(state, Probed(13.0, (OK,)))
    assert (state.phase, actions) == ("confirming", [Confirm(7)])
    state, actions = step(state, Confirmed(14.5))
    assert (state.phase, actions, state.trial) == ("idle", [], None)
    (outcome,) = state.unreported
    assert outcome == ApplyOutcome(
        CANDIDATE, PREVIOUS, "confirmed", None, "every probe passed", (OK,), 10.0, 14.5
    )
    assert outcome.seconds == 4.5


def test_a_failed_probe_reverts_and_says_why() -> None:
    state, actions = run(
        ApplyState(),
        Begin(0, CANDIDATE, PREVIOUS),
        Written(1, 2),
        Applied(2),
        Probed(3, (CUT_OFF,)),
    )
    assert (state.phase, actions) == ("reverting", [Revert(PREVIOUS)])
    state, _ = step(state, RevertDone(4))
    (outcome,) = state.unreported
    assert (outcome.verdict, outcome.reason) == ("reverted", "probe-failed")
    assert outcome.detail == "reachability: connection refused"
    assert outcome.probes == (CUT_OFF,)


def test_no_probe_at_all_is_not_health() -> None:
    state, actions = run(
        ApplyState(), Begin(0, CANDIDATE, PREVIOUS), Written(1, 2), Applied(2), Probed(3, ())
    )
    assert actions == [Revert(PREVIOUS)]
    assert state.trial is not None and "no probe ran" in state.trial.detail


def test_a_failed_apply_reverts() -> None:
    state, actions = run(
        ApplyState(), Begin(0, CANDIDATE, PREVIOUS), Written(1, 2), ApplyFailed(2, "file: EACCES")
    )
    assert actions == [Revert(PREVIOUS)]
    assert state.trial is not None
    assert (state.trial.reason, state.trial.detail) == ("apply-failed", "file: EACCES")


def test_the_deadline_reverts_whatever_the_late_event_says() -> None:
    start = run(ApplyState(), Begin(0, CANDIDATE, PREVIOUS, deadline_s=60), Written(1, 2))[0]
    state, actions = step(start, Tick(59.9))
    assert (state, actions) == (start, [])
    state, actions = step(start, Applied(60.0))
    assert actions == [Revert(PREVIOUS)]
    assert state.trial is not None and state.trial.reason == "deadline"


def test_a_reboot_before_confirmation_reverts_and_within_the_boot_limit_applies_again() -> None:
    begun = Begin(0, CANDIDATE, PREVIOUS, boot_limit=1)
    state, actions = run(ApplyState(), begun, Written(1, 2), Applied(2), Booted(3))
    assert (state.phase, actions) == ("applying", [ApplyConfig(CANDIDATE)])
    state, actions = step(state, Booted(4))
    assert actions == [Revert(PREVIOUS)]
    assert state.trial is not None
    assert (state.trial.reason, state.trial.boots) == ("reboot", 2)
    assert state.trial.detail == "rebooted 2 times before it was confirmed"


def test_a_reboot_while_staged_writes_the_candidate_again() -> None:
    state, actions = run(ApplyState(), Begin(0, CANDIDATE, PREVIOUS, boot_limit=1), Booted(1))
    assert (state.phase, actions) == ("staged", [WriteCandidate(CANDIDATE)])


def test_a_reboot_past_the_deadline_reverts_for_the_deadline() -> None:
    state, actions = run(ApplyState(), Begin(0, CANDIDATE, PREVIOUS, deadline_s=5), Booted(9))
    assert actions == [Revert(PREVIOUS)]
    assert state.trial is not None and state.trial.reason == "deadline"


def test_confirming_and_reverting_repeat_their_action_after_a_reboot() -> None:
    confirming = run(
        ApplyState(), Begin(0, CANDIDATE, PREVIOUS), Written(1, 2), Applied(2), Probed(3, (OK,))
    )[0]
    assert step(confirming, Booted(4)) == (confirming, [Confirm(2)])
    reverting = run(
        ApplyState(), Begin(0, CANDIDATE, PREVIOUS), Written(1, 2), ApplyFailed(2, "x")
    )[0]
    assert step(reverting, Booted(4)) == (reverting, [Revert(PREVIOUS)])
    assert step(ApplyState(), Booted(4)) == (ApplyState(), [])


def test_an_interrupted_trial_reverts_without_counting_a_boot() -> None:
    begun = Begin(0, CANDIDATE, PREVIOUS, boot_limit=3)
    state, actions = run(ApplyState(), begun, Written(1, 2), Interrupted(2))
    assert actions == [Revert(PREVIOUS)]
    assert state.trial is not None
    assert (state.trial.reason, state.trial.boots) == ("interrupted", 0)
    confirming = run(
        ApplyState(), begun, Written(1, 2), Applied(2), Probed(3, (OK,)), Interrupted(4)
    )
    assert confirming[1] == [Confirm(2)]
    assert step(ApplyState(), Interrupted(0)) == (ApplyState(), [])
    assert accepts(ApplyState(), Interrupted(0))


def test_events_out_of_turn_raise_and_the_table_says_which_are_accepted() -> None:
    with pytest.raises(ApplyError, match="Applied is not expected in phase idle"):
        step(ApplyState(), Applied(0))
    assert not accepts(ApplyState(), Written(0, 1))
    assert accepts(ApplyState(), Booted(0)) and accepts(ApplyState(), Delivered(1))
    assert all(phase != "idle" or name in ("Begin", "Tick") for phase, name in TRANSITIONS)
    with pytest.raises(ApplyError, match="positive deadline"):
        step(ApplyState(), Begin(0, CANDIDATE, PREVIOUS, deadline_s=0))
    with pytest.raises(ApplyError):
        ApplyState("probing", None)


def test_delivered_outcomes_leave_and_too_many_drop_the_oldest() -> None:
    state = ApplyState()
    for number in range(MAX_UNREPORTED + 3):
        state = run(
            state, Begin(number, ETag(bytes([number]) * 8), PREVIOUS), Written(number, 1),
            ApplyFailed(number, "x"), RevertDone(number),
        )[0]  # fmt: skip
    assert len(state.unreported) == MAX_UNREPORTED and state.dropped == 3
    assert state.unreported[0].candidate == ETag(bytes([3]) * 8)
    state = step(state, Delivered(MAX_UNREPORTED - 1))[0]
    assert len(state.unreported) == 1 and state.dropped == 0
    assert step(state, Delivered(99))[0].unreported == ()


# -- laws over any run -----------------------------------------------------------------


@dataclass
class Device:
    """A model device: an A/B store (etag, good) per generation, and the appliers."""

    generations: list[tuple[ETag, bool]] = field(default_factory=lambda: [(PREVIOUS, True)])
    applied: ETag = PREVIOUS

    @property
    def current(self) -> ETag:
        return self.generations[-1][0]

    @property
    def current_good(self) -> bool:
        return self.generations[-1][1]

    @property
    def last_known_good(self) -> ETag | None:
        return next((etag for etag, good in reversed(self.generations) if good), None)

    def carry_out(self, action: ApplyAction, now: float, data: st.DataObject) -> ApplyEvent:
        match action:
            case WriteCandidate(candidate=candidate):
                if self.current != candidate:
                    self.generations.append((candidate, False))
                return Written(now, len(self.generations) - 1)
            case ApplyConfig(candidate=candidate):
                self.applied = candidate
                if data.draw(st.booleans(), "apply fails"):
                    return ApplyFailed(now, "refused")
                return Applied(now)
            case RunProbes():
                results = st.lists(st.sampled_from([OK, CUT_OFF]), min_size=1, max_size=2)
                return Probed(now, tuple(data.draw(results, "probes")))
            case Confirm(generation=generation):
                etag, _ = self.generations[generation]
                self.generations[generation] = (etag, True)
                return Confirmed(now)
            case Revert(previous=previous):
                assert self.last_known_good == previous
                if not self.current_good:
                    self.generations.append((previous, True))
                self.applied = previous
                return RevertDone(now)


def drive(
    state: ApplyState, event: ApplyEvent, device: Device, data: st.DataObject, clock: list[float]
) -> tuple[ApplyState, bool]:
    """Feed ``event`` and carry out what follows, with power cuts where the
    data says (``clock`` is the time and the cuts so far); saving the state
    before acting, as the shell does.  Returns the saved state and whether
    the device went down."""
    pending: ApplyEvent | None = event
    while pending is not None:
        state, actions = step(state, pending)  # saved here
        pending = None
        for action in actions:
            clock[0] += data.draw(st.sampled_from([0.0, 1.0, 50.0]), "action time")
            if clock[1] < MAX_CUTS and data.draw(st.integers(0, 9), "power cut") == 9:
                clock[1] += 1
                return state, True
            pending = device.carry_out(action, clock[0], data)
    return state, False


def check_usable(state: ApplyState, device: Device) -> None:
    assert device.last_known_good is not None, "no usable configuration left"
    if state.phase == "idle":
        assert device.current_good, "idle on an unconfirmed generation"
        assert device.applied == device.current


@settings(max_examples=300, deadline=None)
@given(data=st.data(), boot_limit=st.integers(0, 2))
def test_any_run_leaves_a_usable_config_and_every_trial_ends_reported(
    data: st.DataObject, boot_limit: int
) -> None:
    device, state, clock = Device(), ApplyState(), [0.0, 0.0]
    began = 0
    for number in range(data.draw(st.integers(1, 12), "rounds")):
        what = data.draw(st.sampled_from(["begin", "tick", "reboot", "interrupt"]), "what")
        clock[0] += data.draw(st.sampled_from([0.0, 10.0, DEFAULT_DEADLINE_S]), "idle time")
        if what == "begin" and state.phase == "idle":
            previous = device.last_known_good
            assert previous is not None
            event: ApplyEvent = Begin(
                clock[0], ETag(bytes([number + 1]) * 8), previous, boot_limit=boot_limit
            )
            began += 1
        elif what == "tick":
            event = Tick(clock[0])
        elif what == "interrupt":
            event = Interrupted(clock[0])
        else:
            event = Booted(clock[0])
        state, down = drive(state, event, device, data, clock)
        while down:  # the device comes back up: Booted first
            clock[0] += 1.0
            state, down = drive(state, Booted(clock[0]), device, data, clock)
        check_usable(state, device)
    # every trial ends: after enough reboots and time, the device is idle
    for _ in range(boot_limit + 2):
        if state.phase == "idle":
            break
        clock[0] += DEFAULT_DEADLINE_S
        state, down = drive(state, Booted(clock[0]), device, data, clock)
        while down:
            state, down = drive(state, Booted(clock[0]), device, data, clock)
    assert state.phase == "idle"
    check_usable(state, device)
    assert len(state.unreported) == min(began, MAX_UNREPORTED)


@settings(max_examples=100, deadline=None)
@given(reboots=st.integers(1, 5), gap=st.floats(0, 10 * DEFAULT_DEADLINE_S))
def test_a_confirmed_candidate_survives_reboots(reboots: int, gap: float) -> None:
    state = run(
        ApplyState(), Begin(0, CANDIDATE, PREVIOUS), Written(1, 2), Applied(2), Probed(3, (OK,)),
        Confirmed(4),
    )[0]  # fmt: skip
    for number in range(reboots):
        state, actions = step(state, Booted(5 + gap * number))
        assert actions == []
    assert state.unreported[-1].verdict == "confirmed"
    assert state.phase == "idle"


@settings(max_examples=200, deadline=None)
@given(
    phase_events=st.sampled_from([1, 2, 3]),
    boot_limit=st.integers(0, 3),
    late=st.booleans(),
)
def test_an_unconfirmed_candidate_reverts_after_reboots_or_its_deadline(
    phase_events: int, boot_limit: int, late: bool
) -> None:
    events: list[ApplyEvent] = [Written(1, 2), Applied(2)][: phase_events - 1]
    state = run(ApplyState(), Begin(0, CANDIDATE, PREVIOUS, boot_limit=boot_limit), *events)[0]
    actions: list[ApplyAction] = []
    if late:
        state, actions = step(state, Tick(DEFAULT_DEADLINE_S))
    else:
        for boot in range(boot_limit + 1):
            state, actions = step(state, Booted(10 + boot))
    assert actions == [Revert(PREVIOUS)]
    assert isinstance(state.trial, Trial)
    assert state.trial.reason == ("deadline" if late else "reboot")
    state = step(state, RevertDone(DEFAULT_DEADLINE_S + 1))[0]
    assert state.unreported[-1].verdict == "reverted"
