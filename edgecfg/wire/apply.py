"""The device's apply record in bytes: :class:`~edgecfg.core.apply.ApplyState`
as canonical CBOR (issue 15).

The agent keeps this record beside the A/B store (sealed, written
atomically) so that a trial survives a reboot: which candidate, its store
generation, the deadline, the boots so far, the probe results, and the
outcomes not yet reported.  The form, version 1::

    {"v": 1, "phase": text, "dropped": int,
     "trial": null | {"etag": h'..', "prev": h'..', "started": s, "deadline": s,
                      "boot_limit": int, "generation": int | null, "boots": int,
                      "probes": [...], "reason": text | null, "detail": text},
     "unreported": [outcome, ...]}

with probes and outcomes as in :mod:`edgecfg.wire.messages`.  Anything
else is a :class:`~edgecfg.wire.messages.MessageError`.
"""

from __future__ import annotations

from typing import Final

from edgecfg.core.apply import (
    MAX_PROBES,
    MAX_UNREPORTED,
    PHASES,
    REVERT_REASONS,
    ApplyError,
    ApplyState,
    Phase,
    RevertReason,
    Trial,
)
from edgecfg.core.ids import ETag
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.errors import PeerError
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.messages import (
    ETAG_BYTES,
    MessageError,
    outcome_from_value,
    outcome_to_value,
    probe_from_value,
    probe_to_value,
)

RECORD_VERSION: Final = 1
_WHAT: Final = "apply record"
_PHASES: Final[dict[Value, Phase]] = {phase: phase for phase in PHASES}
_REASONS: Final[dict[Value, RevertReason]] = {reason: reason for reason in REVERT_REASONS}


def encode_apply_state(state: ApplyState) -> bytes:
    """The record's canonical CBOR."""
    trial = state.trial
    record: Tree = {
        "v": RECORD_VERSION,
        "phase": state.phase,
        "dropped": state.dropped,
        "trial": None if trial is None else _trial_to_value(trial),
        "unreported": [outcome_to_value(outcome) for outcome in state.unreported],
    }
    return encode(record)


def decode_apply_state(data: bytes) -> ApplyState:
    """The record in ``data``; :class:`MessageError` naming what is wrong."""
    try:
        record = decode(data)
    except PeerError as error:
        raise MessageError(f"{_WHAT}: {error}") from None
    if not is_map(record) or record.get("v") != RECORD_VERSION:
        raise MessageError(f"{_WHAT}: not a version {RECORD_VERSION} record")
    phase = _PHASES.get(record.get("phase")) if isinstance(record.get("phase"), str) else None
    dropped = _count(record, "dropped")
    unreported = record.get("unreported")
    if phase is None or not isinstance(unreported, list) or len(unreported) > MAX_UNREPORTED:
        raise MessageError(f"{_WHAT}: bad 'phase' or 'unreported'")
    trial = record.get("trial")
    try:
        return ApplyState(
            phase,
            None if trial is None else _trial_from_value(trial),
            tuple(outcome_from_value(outcome) for outcome in unreported),
            dropped,
        )
    except ApplyError as error:
        raise MessageError(f"{_WHAT}: {error}") from None


def _trial_to_value(trial: Trial) -> Value:
    return {
        "etag": trial.candidate,
        "prev": trial.previous,
        "started": float(trial.started_at),
        "deadline": float(trial.deadline),
        "boot_limit": trial.boot_limit,
        "generation": trial.generation,
        "boots": trial.boots,
        "probes": [probe_to_value(probe) for probe in trial.probes],
        "reason": trial.reason,
        "detail": trial.detail,
    }


def _trial_from_value(value: Value) -> Trial:
    if not is_map(value):
        raise MessageError(f"{_WHAT}: 'trial' is a map")
    candidate, previous = value.get("etag"), value.get("prev")
    started, deadline = value.get("started"), value.get("deadline")
    generation, reason, detail = value.get("generation"), value.get("reason"), value.get("detail")
    probes = value.get("probes")
    if (
        not isinstance(candidate, bytes)
        or not isinstance(previous, bytes)
        or len(candidate) != ETAG_BYTES
        or len(previous) != ETAG_BYTES
        or not isinstance(started, float)
        or not isinstance(deadline, float)
        or not (generation is None or (type(generation) is int and generation >= 1))
        or not isinstance(probes, list)
        or len(probes) > MAX_PROBES
        or not isinstance(detail, str)
    ):
        raise MessageError(f"{_WHAT}: the trial has the wrong shape")
    checked = _REASONS.get(reason) if isinstance(reason, str) else None
    if reason is not None and checked is None:
        raise MessageError(f"{_WHAT}: unknown revert reason {reason!r}")
    return Trial(
        candidate=ETag(candidate),
        previous=ETag(previous),
        started_at=started,
        deadline=deadline,
        boot_limit=_count(value, "boot_limit"),
        generation=generation if type(generation) is int else None,
        boots=_count(value, "boots"),
        probes=tuple(probe_from_value(probe) for probe in probes),
        reason=checked,
        detail=detail,
    )


def _count(record: dict[str, Value], key: str) -> int:
    value = record.get(key)
    if type(value) is not int or not 0 <= value < 2**32:
        raise MessageError(f"{_WHAT}: '{key}' must be a count")
    return value
