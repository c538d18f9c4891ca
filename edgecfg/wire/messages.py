"""The CBOR messages of sync, as typed records decoded and checked once.

A device's state report (``POST /state/{dev}``, DESIGN §6) and the gateway's
answer to it travel as CBOR maps.  Each has one frozen dataclass here, with
``encode`` and ``decode``: whoever receives one decodes it at the edge and
works with fields, never with a dict checked by hand.  A malformed message
is a :class:`MessageError` (4.00 at the gateway) that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from edgecfg.core.ids import ETag
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.errors import PeerError
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

    def encode(self) -> bytes:
        report: Tree = {"applied": self.applied}
        if self.journal is not None:
            report["journal"] = list(self.journal)
            report["base"] = self.base
        if self.store_events:
            report["store_events"] = list[Value](self.store_events)
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
        return cls(
            applied=_etag(report, "applied", "state report"),
            journal=tuple(cast(list[Value], journal)) if journal is not None else None,
            base=_etag(report, "base", "state report", strict=False),
            store_events=tuple(cast(list[str], events)),
            agent=_text(report, "agent"),
            firmware=_text(report, "firmware"),
            hardware=_text(report, "hardware"),
            schema=schema,
        )


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


def _text(report: dict[str, Value], key: str) -> str | None:
    value = report.get(key)
    if value is not None and not isinstance(value, str):
        raise MessageError(f"state report '{key}' must be text")
    return value
