"""Apply, probe, then commit or revert, on the device (issue 15), without I/O.

A new configuration becomes the device's last-known-good only after it was
applied and the health probes passed; otherwise the device goes back to the
last-known-good by itself.  This is the A/B updater's rule (boot counter and
confirm) for configuration: a candidate that was not confirmed does not
survive a reboot beyond ``boot_limit`` (0: the first reboot reverts it), nor
its deadline.  Every trial ends in an :class:`ApplyOutcome` that waits in
:attr:`ApplyState.unreported` until the gateway took it: a revert is never
silent.

The agent's shell (:mod:`edgecfg.agent.apply`) owns the A/B store, the
appliers, the probes and the clock.  It keeps :class:`ApplyState` on disk
and, for each event, calls :func:`step`, **saves the new state, then** carries
out the actions in order, each answered by the next event.  Saving first
makes every action one that is repeated after a power cut, so each one is
idempotent: writing a candidate the store already holds, applying a
configuration again, marking a good generation good, reverting to the
last-known-good that is already current.

Transitions (phase, event -> phase, actions; :data:`TRANSITIONS` is the
table, any other pair raises :class:`ApplyError`)::

    idle        Begin        -> staged (WriteCandidate)
    staged      Written      -> applying (ApplyConfig)
    staged      ApplyFailed  -> reverting (Revert): the candidate was refused
                                before it was written (schema, capabilities)
    applying    Applied      -> probing (RunProbes)
    applying    ApplyFailed  -> reverting (Revert)
    probing     Probed       -> confirming (Confirm) when every probe passed,
                                else reverting (Revert)
    confirming  Confirmed    -> idle, outcome "confirmed"
    reverting   RevertDone   -> idle, outcome "reverted"
    staged, applying,
    probing     Tick         -> reverting (Revert) once the deadline passed
    (any)       Booted       -> an unconfirmed trial: applying again (within
                                ``boot_limit``) or reverting; confirming and
                                reverting repeat their action
    (any)       Interrupted  -> an unconfirmed trial reverts (the agent
                                stopped it without a reboot: not evidence
                                against the config, so the gateway offers it
                                again); confirming and reverting repeat
    (any)       Delivered    -> the same phase, fewer outcomes to report

In staged, applying and probing every event at or after the deadline
reverts (reason ``deadline``), whatever it says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from edgecfg.core.ids import ETag
from edgecfg.errors import EdgecfgError

Phase = Literal["idle", "staged", "applying", "probing", "confirming", "reverting"]
PHASES: Final[tuple[Phase, ...]] = (
    "idle", "staged", "applying", "probing", "confirming", "reverting",
)  # fmt: skip
Verdict = Literal["confirmed", "reverted"]
RevertReason = Literal["apply-failed", "probe-failed", "deadline", "reboot", "interrupted"]
REVERT_REASONS: Final[tuple[RevertReason, ...]] = (
    "apply-failed", "probe-failed", "deadline", "reboot", "interrupted",
)  # fmt: skip
DEFAULT_DEADLINE_S: Final = 300.0
"""How long a candidate may stay unconfirmed (applied, probing) before it is reverted."""
MAX_UNREPORTED: Final = 16
"""Outcomes kept for the gateway at most; beyond that the oldest are dropped
(counted in :attr:`ApplyState.dropped`, which is reported too)."""
MAX_PROBES: Final = 16
"""Probe results kept per trial."""
_UNCONFIRMED: Final = frozenset({"staged", "applying", "probing"})


class ApplyError(EdgecfgError):
    """An event the apply machine does not expect in its phase (a shell bug)."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe's verdict on a candidate: ``name`` (``reachability``),
    passed or not, and what it saw (``detail``, e.g. the CoAP code or why the
    gateway could not be reached)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """How a trial of ``candidate`` ended, for the next state report.

    ``previous`` is the last-known-good the trial started from (and, when
    ``verdict`` is ``reverted``, the configuration the device runs again);
    ``reason`` says why it reverted (None when confirmed), ``detail`` in
    words.  Times are the device's wall clock in seconds.
    """

    candidate: ETag
    previous: ETag
    verdict: Verdict
    reason: RevertReason | None
    detail: str
    probes: tuple[ProbeResult, ...]
    started_at: float
    ended_at: float
    boots: int = 0

    @property
    def seconds(self) -> float:
        """From the start of the trial to its end: the time to confirm (or to revert)."""
        return max(0.0, self.ended_at - self.started_at)


@dataclass(frozen=True, slots=True)
class Trial:
    """A candidate on trial: what the shell persists beside the A/B store.

    ``generation`` is the store generation holding the candidate (None until
    written); ``boots`` counts reboots since the trial began; ``reason`` and
    ``detail`` are set once the trial is reverting.
    """

    candidate: ETag
    previous: ETag
    started_at: float
    deadline: float
    boot_limit: int = 0
    generation: int | None = None
    boots: int = 0
    probes: tuple[ProbeResult, ...] = ()
    reason: RevertReason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ApplyState:
    """The device's apply state: the trial in progress (None when idle) and
    the outcomes the gateway has not acknowledged yet."""

    phase: Phase = "idle"
    trial: Trial | None = None
    unreported: tuple[ApplyOutcome, ...] = ()
    dropped: int = 0

    def __post_init__(self) -> None:
        if (self.phase == "idle") != (self.trial is None):
            raise ApplyError(f"phase {self.phase} with trial {self.trial!r}")


# -- events (shell -> machine) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Moment:
    """An event that says only when it happened."""

    now: float


@dataclass(frozen=True, slots=True)
class Begin:
    """A verified configuration ``candidate`` arrived while ``previous`` is
    the last-known-good; it may stay unconfirmed ``deadline_s`` seconds and
    survive ``boot_limit`` reboots unconfirmed."""

    now: float
    candidate: ETag
    previous: ETag
    deadline_s: float = DEFAULT_DEADLINE_S
    boot_limit: int = 0


@dataclass(frozen=True, slots=True)
class Written:
    """The candidate is in the A/B store as generation ``generation`` (not good yet)."""

    now: float
    generation: int


class Applied(_Moment):
    """Every applier took the candidate."""


@dataclass(frozen=True, slots=True)
class ApplyFailed:
    """An applier refused or failed; ``detail`` says which and why."""

    now: float
    detail: str


@dataclass(frozen=True, slots=True)
class Probed:
    """The health probes ran on the applied candidate."""

    now: float
    results: tuple[ProbeResult, ...]


class Confirmed(_Moment):
    """The candidate's generation is marked good: it is the last-known-good now."""


@dataclass(frozen=True, slots=True)
class RevertDone:
    """The last-known-good is current again in the store; ``trouble`` says
    what went wrong handing it to the appliers again (empty: nothing)."""

    now: float
    trouble: str = ""


class Tick(_Moment):
    """Time passed (the shell checks deadlines on its wakes)."""


class Booted(_Moment):
    """The device (re)started: the first event after every boot."""


class Interrupted(_Moment):
    """A trial was abandoned midway without a reboot (the agent was stopped
    mid-sync) and a new configuration arrives: settle the old one first."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """The gateway acknowledged the first ``count`` unreported outcomes."""

    count: int


ApplyEvent = (
    Begin | Written | Applied | ApplyFailed | Probed | Confirmed | RevertDone | Tick | Booted
    | Interrupted | Delivered
)  # fmt: skip


# -- actions (machine -> shell) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OnCandidate:
    """An action on the candidate of the trial."""

    candidate: ETag


class WriteCandidate(_OnCandidate):
    """Commit ``candidate`` to the A/B store (not good); answer :class:`Written`."""


class ApplyConfig(_OnCandidate):
    """Hand the candidate to every applier; answer :class:`Applied` or :class:`ApplyFailed`."""


class RunProbes(_OnCandidate):
    """Run the health probes on the applied candidate; answer :class:`Probed`."""


@dataclass(frozen=True, slots=True)
class Confirm:
    """Mark store generation ``generation`` good; answer :class:`Confirmed`."""

    generation: int


@dataclass(frozen=True, slots=True)
class Revert:
    """Make the last-known-good ``previous`` current in the store and apply it
    again; answer :class:`RevertDone`."""

    previous: ETag


ApplyAction = WriteCandidate | ApplyConfig | RunProbes | Confirm | Revert


# -- the machine -------------------------------------------------------------------------


def step(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    """The next state and the actions ``event`` calls for; :class:`ApplyError`
    when the phase does not expect the event."""
    if isinstance(event, Delivered):
        return _delivered(state, event), []
    if isinstance(event, Booted | Interrupted):
        return _resumed(state, event)
    handler = TRANSITIONS.get((state.phase, type(event).__name__))
    if handler is None:
        raise ApplyError(f"{type(event).__name__} is not expected in phase {state.phase}")
    trial = state.trial
    if trial is not None and state.phase in _UNCONFIRMED and event.now >= trial.deadline:
        waited = event.now - trial.started_at
        return _revert(state, trial, "deadline", f"not confirmed within {waited:.0f} s")
    return handler(state, event)


def accepts(state: ApplyState, event: ApplyEvent) -> bool:
    """Whether :func:`step` takes ``event`` in ``state``'s phase."""
    if isinstance(event, Delivered | Booted | Interrupted):
        return True
    return (state.phase, type(event).__name__) in TRANSITIONS


def _begin(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, Begin)
    if event.deadline_s <= 0 or event.boot_limit < 0:
        raise ApplyError("a trial needs a positive deadline and a boot limit of 0 or more")
    trial = Trial(
        event.candidate, event.previous, event.now, event.now + event.deadline_s, event.boot_limit
    )
    return replace(state, phase="staged", trial=trial), [WriteCandidate(event.candidate)]


def _written(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, Written) and state.trial is not None
    trial = replace(state.trial, generation=event.generation)
    return replace(state, phase="applying", trial=trial), [ApplyConfig(trial.candidate)]


def _applied(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, Applied) and state.trial is not None
    return replace(state, phase="probing"), [RunProbes(state.trial.candidate)]


def _apply_failed(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, ApplyFailed) and state.trial is not None
    return _revert(state, state.trial, "apply-failed", event.detail)


def _probed(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, Probed) and state.trial is not None
    trial = replace(state.trial, probes=event.results[:MAX_PROBES])
    failed = [result for result in event.results if not result.ok]
    if failed:
        detail = "; ".join(f"{r.name}: {r.detail}" if r.detail else r.name for r in failed)
        return _revert(state, trial, "probe-failed", detail)
    if not event.results:
        return _revert(state, trial, "probe-failed", "no probe ran: nothing showed it healthy")
    assert trial.generation is not None  # set when written, before probing
    return replace(state, phase="confirming", trial=trial), [Confirm(trial.generation)]


def _confirmed(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, Confirmed) and state.trial is not None
    return _ended(state, state.trial, "confirmed", event.now), []


def _revert_done(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    assert isinstance(event, RevertDone) and state.trial is not None
    trial = state.trial
    if event.trouble:
        trial = replace(trial, detail=f"{trial.detail}; then {event.trouble}")
    return _ended(state, trial, "reverted", event.now), []


def _tick(state: ApplyState, event: ApplyEvent) -> tuple[ApplyState, list[ApplyAction]]:
    return state, []  # before the deadline (step reverts after it)


def _resumed(
    state: ApplyState, event: Booted | Interrupted
) -> tuple[ApplyState, list[ApplyAction]]:
    trial = state.trial
    if trial is None:
        return state, []
    if state.phase == "confirming":
        assert trial.generation is not None
        return state, [Confirm(trial.generation)]
    if state.phase == "reverting":
        return state, [Revert(trial.previous)]
    if isinstance(event, Booted):
        trial = replace(trial, boots=trial.boots + 1)
    if event.now >= trial.deadline:
        return _revert(state, trial, "deadline", "the deadline passed while the trial was stopped")
    if isinstance(event, Interrupted):
        return _revert(state, trial, "interrupted", "the trial was stopped before it was confirmed")
    if trial.boots > trial.boot_limit:
        shown = "once" if trial.boots == 1 else f"{trial.boots} times"
        return _revert(state, trial, "reboot", f"rebooted {shown} before it was confirmed")
    if trial.generation is None:  # the candidate may or may not be in the store
        return replace(state, phase="staged", trial=trial), [WriteCandidate(trial.candidate)]
    return replace(state, phase="applying", trial=trial), [ApplyConfig(trial.candidate)]


def _delivered(state: ApplyState, event: Delivered) -> ApplyState:
    count = max(0, min(event.count, len(state.unreported)))
    return replace(state, unreported=state.unreported[count:], dropped=0)


def _revert(
    state: ApplyState, trial: Trial, reason: RevertReason, detail: str
) -> tuple[ApplyState, list[ApplyAction]]:
    trial = replace(trial, reason=reason, detail=detail)
    return replace(state, phase="reverting", trial=trial), [Revert(trial.previous)]


def _ended(state: ApplyState, trial: Trial, verdict: Verdict, now: float) -> ApplyState:
    detail = trial.detail if verdict == "reverted" else "every probe passed"
    outcome = ApplyOutcome(
        trial.candidate, trial.previous, verdict, trial.reason if verdict == "reverted" else None,
        detail, trial.probes, trial.started_at, now, trial.boots,
    )  # fmt: skip
    unreported = (*state.unreported, outcome)
    dropped = state.dropped + max(0, len(unreported) - MAX_UNREPORTED)
    return ApplyState("idle", None, unreported[-MAX_UNREPORTED:], dropped)


Handler = Callable[[ApplyState, ApplyEvent], tuple[ApplyState, list[ApplyAction]]]

TRANSITIONS: Final[dict[tuple[Phase, str], Handler]] = {
    ("idle", "Begin"): _begin,
    ("staged", "Written"): _written,
    ("applying", "Applied"): _applied,
    ("staged", "ApplyFailed"): _apply_failed,
    ("applying", "ApplyFailed"): _apply_failed,
    ("probing", "Probed"): _probed,
    ("confirming", "Confirmed"): _confirmed,
    ("reverting", "RevertDone"): _revert_done,
    ("idle", "Tick"): _tick,
    ("staged", "Tick"): _tick,
    ("applying", "Tick"): _tick,
    ("probing", "Tick"): _tick,
    ("confirming", "Tick"): _tick,
    ("reverting", "Tick"): _tick,
}
"""Every (phase, event) :func:`step` accepts besides Booted and Delivered."""
