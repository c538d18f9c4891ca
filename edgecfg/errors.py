"""The edgecfg exception tree.

One root, :class:`EdgecfgError`.  Subclasses say *whose fault* an error is and
carry the data needed to act on it (the config path, the limit, the offset,
the expected and actual ETag).  The gateway maps these classes to CoAP codes
in one table; the CLI prints ``str(error)`` as one line.

- :class:`UsageError` — local misuse of the API or CLI (bad path text, a value
  outside the model, a schema that breaks its own rules).
- :class:`PeerError` — bytes or requests from somebody else are wrong
  (malformed CBOR, a delta for another base, a config that violates the schema).
- :class:`StoreError` — persistence could not do what was asked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, cast


class EdgecfgError(Exception):
    """Root of every error edgecfg raises on purpose."""


class CommandError(EdgecfgError):
    """A command (CLI or benchmark) cannot go on; the message is printed as one line."""


class UsageError(EdgecfgError, ValueError):
    """The caller used the API wrongly; fix the call."""


class PeerError(EdgecfgError):
    """Input from outside (a file, a device, a gateway) is wrong."""


class PathError(UsageError):
    """A configuration path is malformed or does not address a node."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{message} (path {path!r})")
        self.path = path


class ModelError(UsageError, TypeError):
    """A value is outside the configuration model (DESIGN §3)."""

    def __init__(self, message: str, *, path: str) -> None:
        where = f" at {path}" if path else " at the root"
        super().__init__(f"{message}{where}")
        self.reason = message
        self.path = path


class EncodeError(ModelError):
    """A tree cannot be encoded as canonical CBOR of the model."""


class DecodeError(PeerError, ValueError):
    """Bytes are not a well-formed, bounded CBOR value of the model.

    ``offset`` is the byte offset at which the problem was found.
    """

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(f"{message} at byte offset {offset}")
        self.reason = message
        self.offset = offset


SHOWN_CHARS = 80
"""A value quoted in a message is cut after this many characters."""


def show_value(value: object) -> str:
    """A configuration value as users write it (JSON; bytes as ``h'..'``, as
    CBOR diagnostic notation does), cut at :data:`SHOWN_CHARS`: messages quote
    values, never Python reprs (``null``, not ``None``)."""
    text = _shown(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."


def _shown(value: object) -> str:
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(item) for item in cast(Sequence[object], value)) + "]"
    if isinstance(value, dict):
        items = cast(dict[object, object], value).items()
        return "{" + ", ".join(f"{_shown(k)}: {_shown(v)}" for k, v in items) + "}"
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a configuration breaks a schema."""

    path: str
    value: object
    expected: str
    missing: bool = False

    def __str__(self) -> str:
        got = "it is missing" if self.missing else f"got {show_value(self.value)}"
        return f"{self.path or '<root>'}: expected {self.expected}, {got}"


class SchemaError(UsageError):
    """A schema document is itself invalid (bad type, reused id, ...)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{message} (at {path})" if path else message)
        self.path = path


class ValidationError(PeerError, ValueError):
    """A configuration violates a schema; carries every violation."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        first = self.violations[0] if self.violations else None
        more = len(self.violations) - 1
        tail = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"{first}{tail}" if first else "invalid configuration")


class DeltaError(PeerError, ValueError):
    """A delta is malformed, exceeds a bound, or does not fit."""


class DeltaCheckFailed(DeltaError):
    """A delta's ETag check failed: ``expected`` and ``actual`` are the two
    ETags; a subclass says which check, in its ``template``."""

    template: ClassVar[str]

    def __init__(self, *, expected: bytes, actual: bytes) -> None:
        super().__init__(self.template.format(expected=expected.hex(), actual=actual.hex()))
        self.expected = expected
        self.actual = actual


class DeltaBaseMismatch(DeltaCheckFailed):
    """A delta was applied to a tree that is not its base."""

    template = "delta base mismatch: delta is for base {expected}, this tree checks as {actual}"


class DeltaIntegrityError(DeltaCheckFailed):
    """Applying a delta did not produce its declared target."""

    template = (
        "delta integrity failure: target should check as {expected}, result checks as {actual}"
    )


class WriteRefused(UsageError):
    """A layer or device write was refused; nothing was stored.

    ``devices`` counts the devices that would have been hurt and ``examples``
    names a few; subclasses say why.
    """

    def __init__(self, message: str, *, devices: int = 0, examples: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.devices = devices
        self.examples = tuple(examples)


class LockViolation(WriteRefused):
    """The write changes a path that a lower-precedence layer locked."""


class DirectiveConflict(WriteRefused):
    """The write would make tied layers disagree on a path for some devices."""


class FleetValidationError(WriteRefused):
    """The write would make some devices' effective configs violate the schema."""


class OverBudget(PeerError):
    """A peer went over one of its budgets or quotas (requests, observations,
    upload spool, telemetry bytes per day); nothing was done.  ``limit`` names
    the budget, ``retry_after_s`` says when trying again may succeed."""

    def __init__(self, message: str, *, limit: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_s = retry_after_s


class StoreError(EdgecfgError):
    """Persistence failed or was asked for something impossible."""


class NotFound(StoreError, LookupError):
    """A stored object (device, layer, schema, blob) does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no such {kind}: {key}")
        self.kind = kind
        self.key = key


class StoreConflict(StoreError):
    """A write raced another (stale parent revision, id already taken)."""
