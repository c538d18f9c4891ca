"""The CBOR messages of sync, as typed records decoded and checked once.

A device's state report (``POST /state/{dev}``, DESIGN §6) and the gateway's
answer to it travel as CBOR maps.  Each has one frozen dataclass here, with
``encode`` and ``decode``: whoever receives one decodes it at the edge and
works with fields, never with a dict checked by hand.  A malformed message
is a :class:`MessageError` (4.00 at the gateway) that names the field.

A report may carry ``apply``: how the device's trials of new configurations
ended (confirmed, or reverted and why, issue 15), each a map::

    {"etag": h'..', "prev": h'..', "verdict": "confirmed" | "reverted",
     "reason": "probe-failed" | "apply-failed" | "deadline" | "reboot" (reverted only),
     "detail": text, "probes": [{"name": text, "ok": bool, "detail": text}, ...],
     "started": seconds, "ended": seconds, "boots": int}

and ``apply_dropped``, the outcomes the device had to forget (more than it
keeps) since its last report.  Both keys are absent when there is nothing
to say, so a report without them is byte for byte what it was before.

A report may carry ``adapt``: the device's local adaptation layer (issue 14,
:mod:`edgecfg.wire.adaptation`), sent once after it changed; absent
otherwise, so reports of devices without rules are as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from edgecfg.core.apply import (
    MAX_PROBES,
    MAX_UNREPORTED,
    REVERT_REASONS,
    ApplyOutcome,
    ProbeResult,
    RevertReason,
)
from edgecfg.core.ids import ETag
from edgecfg.core.rules import Adaptation
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.errors import PeerError
from edgecfg.wire.adaptation import AdaptationError, adaptation_from_value, adaptation_to_value
from edgecfg.wire.cbor import decode, encode

MAX_SCHEMA_VERSION: Final = 2**31 - 1
"""The largest schema version a report or a query may name."""
ETAG_BYTES: Final = 8


class MessageError(PeerError, ValueError):
    """A sync message that is not what its kind must be; the text names the field."""


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """``POST /state/{dev}``: what a device applied, and what it changed offline.

    ``journal`` is the list of offline changes in the journal's wire form
    (checked entry by entry by reconcile); ``base`` the configuration those
    changes were made on.  ``agent``, ``firmware``, ``hardware`` and
    ``schema`` introduce the device (sent once per agent run)."""

    applied: ETag | None = None
    journal: tuple[Value, ...] | None = None
    base: ETag | None = None
    store_events: tuple[str, ...] = ()
    agent: str | None = None
    firmware: str | None = None
    hardware: str | None = None
    schema: int | None = None
    apply: tuple[ApplyOutcome, ...] = ()
    apply_dropped: int = 0
    adapt: Adaptation | None = None

    def encode(self) -> bytes:
        report: Tree = {"applied": self.applied}
        if self.journal is not None:
            report["journal"] = list(self.journal)
            report["base"] = self.base
        if self.store_events:
            report["store_events"] = list[Value](self.store_events)
        if self.apply:
            report["apply"] = [outcome_to_value(outcome) for outcome in self.apply]
        if self.apply_dropped:
            report["apply_dropped"] = self.apply_dropped
        if self.adapt is not None:
            report["adapt"] = adaptation_to_value(self.adapt)
        for key, value in (
            ("agent", self.agent),
            ("schema", self.schema),
            ("firmware", self.firmware),
            ("hardware", self.hardware),
        ):
            if value is not None:
                report[key] = value
        return encode(report)

    @classmethod
    def decode(cls, body: bytes) -> DeviceReport:
        report = _map(body, "a state report")
        journal = report.get("journal")
        if journal is not None and not isinstance(journal, list):
            raise MessageError("state report 'journal' must be a list of entries")
        events = report.get("store_events", [])
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise MessageError("state report 'store_events' must be a list of text")
        schema = report.get("schema")
        if schema is not None and (
            type(schema) is not int or not 0 <= schema <= MAX_SCHEMA_VERSION
        ):
            raise MessageError(
                f"state report 'schema' must be a version from 0 to {MAX_SCHEMA_VERSION}"
            )
        outcomes = report.get("apply", [])
        if not isinstance(outcomes, list) or len(outcomes) > MAX_UNREPORTED:
            raise MessageError(
                f"state report 'apply' must be a list of at most {MAX_UNREPORTED} outcomes"
            )
        dropped = report.get("apply_dropped", 0)
        if type(dropped) is not int or not 0 <= dropped < 2**32:
            raise MessageError("state report 'apply_dropped' must be a count")
        adapt = report.get("adapt")
        try:
            adaptation = adaptation_from_value(adapt) if adapt is not None else None
        except AdaptationError as error:
            raise MessageError(f"state report 'adapt': {error}") from None
        return cls(
            applied=_etag(report, "applied", "state report"),
            journal=tuple(cast(list[Value], journal)) if journal is not None else None,
            base=_etag(report, "base", "state report", strict=False),
            store_events=tuple(cast(list[str], events)),
            agent=_text(report, "agent"),
            firmware=_text(report, "firmware"),
            hardware=_text(report, "hardware"),
            schema=schema,
            apply=tuple(outcome_from_value(outcome) for outcome in outcomes),
            apply_dropped=dropped,
            adapt=adaptation,
        )


def outcome_to_value(outcome: ApplyOutcome) -> Value:
    """An apply outcome in its wire form (see the module docstring)."""
    value: Tree = {
        "etag": outcome.candidate,
        "prev": outcome.previous,
        "verdict": outcome.verdict,
        "detail": outcome.detail,
        "probes": [probe_to_value(probe) for probe in outcome.probes],
        "started": outcome.started_at,
        "ended": outcome.ended_at,
        "boots": outcome.boots,
    }
    if outcome.reason is not None:
        value["reason"] = outcome.reason
    return value


def outcome_from_value(value: Value) -> ApplyOutcome:
    """An apply outcome from its wire form; :class:`MessageError` naming the field."""
    what = "an apply outcome"
    if not is_map(value):
        raise MessageError(f"{what} is a CBOR map")
    candidate = _etag(value, "etag", what)
    previous = _etag(value, "prev", what)
    if candidate is None or previous is None:
        raise MessageError(f"{what} has the 8-byte 'etag' and 'prev' of both configs")
    verdict = value.get("verdict")
    reason = value.get("reason")
    if verdict == "confirmed" and reason is None:
        checked: RevertReason | None = None
    elif verdict == "reverted" and reason in REVERT_REASONS:
        checked = reason
    else:
        shown = ", ".join(REVERT_REASONS)
        raise MessageError(
            f"{what}: 'verdict' is confirmed (no 'reason') or reverted with a 'reason' of {shown}"
        )
    probes = value.get("probes", [])
    if not isinstance(probes, list) or len(probes) > MAX_PROBES:
        raise MessageError(f"{what}: 'probes' must be a list of at most {MAX_PROBES}")
    times = [value.get(key) for key in ("started", "ended")]
    started, ended = (t if type(t) in (int, float) else None for t in times)
    if started is None or ended is None:
        raise MessageError(f"{what}: 'started' and 'ended' must be numbers (seconds)")
    boots = value.get("boots", 0)
    if type(boots) is not int or not 0 <= boots < 2**32:
        raise MessageError(f"{what}: 'boots' must be a count")
    return ApplyOutcome(
        candidate,
        previous,
        "confirmed" if checked is None else "reverted",
        checked,
        _text(value, "detail", what) or "",
        tuple(probe_from_value(probe) for probe in probes),
        float(cast(float, started)),
        float(cast(float, ended)),
        boots,
    )


def probe_to_value(probe: ProbeResult) -> Value:
    """A probe result in its wire form."""
    return {"name": probe.name, "ok": probe.ok, "detail": probe.detail}


def probe_from_value(value: Value) -> ProbeResult:
    """A probe result from its wire form; :class:`MessageError` naming the field."""
    what = "a probe result"
    if not is_map(value) or not isinstance(value.get("ok"), bool):
        raise MessageError(f"{what} is a map with a boolean 'ok'")
    name = _text(value, "name", what)
    if not name:
        raise MessageError(f"{what} has a 'name'")
    return ProbeResult(name, value["ok"] is True, _text(value, "detail", what) or "")


@dataclass(frozen=True, slots=True)
class StateAnswer:
    """The gateway's answer to a state report that is not simply "current"
    (an empty 2.04 says that): the current ETag, whether the device holds
    it, and the outcome of merging its offline changes (a map with ``ack``)."""

    etag: ETag
    current: bool
    local: Value | None = None

    def encode(self) -> bytes:
        answer: Tree = {"etag": self.etag, "current": self.current}
        if self.local is not None:
            answer["local"] = self.local
        return encode(answer)

    @classmethod
    def decode(cls, body: bytes) -> StateAnswer:
        answer = _map(body, "a state answer")
        etag = _etag(answer, "etag", "state answer")
        current = answer.get("current")
        if etag is None or not isinstance(current, bool):
            raise MessageError("a state answer has an 8-byte 'etag' and a boolean 'current'")
        local = answer.get("local")
        if local is not None and not is_map(local):
            raise MessageError("state answer 'local' must be a map")
        return cls(etag, current, local)

    @property
    def acknowledged(self) -> int | None:
        """The journal sequence number the merge acknowledged, if any."""
        ack = self.local.get("ack") if is_map(self.local) else None
        return ack if type(ack) is int else None


def _map(body: bytes, what: str) -> dict[str, Value]:
    try:
        value = decode(body)
    except PeerError as error:
        raise MessageError(f"{what}: {error}") from None
    if not is_map(value):
        raise MessageError(f"{what} is a CBOR map")
    return value


def _etag(message: dict[str, Value], key: str, what: str, *, strict: bool = True) -> ETag | None:
    value = message.get(key)
    if isinstance(value, bytes) and len(value) == ETAG_BYTES:
        return ETag(value)
    if value is None or not strict:
        return None  # a base that is no ETag is a base the gateway does not know
    raise MessageError(f"{what} '{key}' must be the 8-byte ETag of the config")


def _text(report: dict[str, Value], key: str, what: str = "state report") -> str | None:
    value = report.get(key)
    if value is not None and not isinstance(value, str):
        raise MessageError(f"{what} '{key}' must be text")
    return value
