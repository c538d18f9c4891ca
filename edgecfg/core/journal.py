"""The local-override journal of a device (issue 6, "Local overrides").

While offline a device may change keys the schema lets it change
(:func:`check_override`).  Each change is a :class:`JournalEntry` appended to
a :class:`Journal`: path, new value (or :data:`~edgecfg.core.tree.UNSET` to
remove the override), a reason, a hybrid-logical-clock timestamp and a
sequence number.  Sequence numbers strictly increase and are never reused,
not even after compaction, so the gateway can acknowledge "everything up to
N" and replayed or reordered acknowledgements are harmless.

- :meth:`Journal.overrides` — the local overrides now in effect: the latest
  entry per path, minus paths whose latest entry removes the override.
- :meth:`Journal.since` / :meth:`Journal.pending` — entries the gateway has
  not acknowledged yet (reported in ``POST /state``).
- :meth:`Journal.compact` — drops history, never information
  :meth:`~Journal.overrides` or :meth:`~Journal.pending` needs.

Values only; the byte framing of the journal file lives in
:mod:`edgecfg.wire.journal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from edgecfg.core.hlc import Timestamp
from edgecfg.core.path import Path, format_path
from edgecfg.core.schema import KeySpec, Schema
from edgecfg.core.tree import UNSET, UnsetType, Value, check_model, values_equal
from edgecfg.errors import PathError, PeerError, UsageError, show_value

FRAME_OVERHEAD: Final = 8
"""Bytes a journal file adds around each entry's CBOR (length prefix and CRC32)."""

_HEAD: Final = 9  # the longest CBOR item head (major type + 8-byte argument)


class LocalOverrideRefused(UsageError):
    """A local override is not allowed by the schema; nothing was recorded.

    ``path`` is the dotted path, ``policy`` the key's local-override and
    merge policy in words, ``bound`` the rule the value breaks.
    """

    def __init__(self, *, path: str, policy: str, bound: str, value: object) -> None:
        super().__init__(
            f"local override of {path} = {show_value(value)} refused: "
            f"expected {bound}; policy: {policy}"
        )
        self.path = path
        self.policy = policy
        self.bound = bound
        self.value = value


class JournalError(UsageError):
    """The journal was used wrongly (an entry out of order, impossible bounds)."""


class UnknownSequence(PeerError, ValueError):
    """The gateway acknowledged a sequence number this journal never issued."""

    def __init__(self, *, sequence: int, last_sequence: int) -> None:
        super().__init__(
            f"acknowledgement of journal sequence {sequence}, but the journal "
            f"only reaches {last_sequence}"
        )
        self.sequence = sequence
        self.last_sequence = last_sequence


def describe_local_policy(spec: KeySpec) -> str:
    """The local-override and merge policy of a key in words, for messages."""
    local = spec.local
    if not local.allowed:
        return f"local changes not allowed, merge {spec.merge}"
    limits: list[str] = []
    if local.min is not None:
        limits.append(f"min {local.min}")
    if local.max is not None:
        limits.append(f"max {local.max}")
    if local.enum is not None:
        limits.append(f"one of {show_value(list(local.enum))}")
    within = f" ({', '.join(limits)})" if limits else ""
    return f"local changes allowed{within}, merge {spec.merge}"


def check_override(schema: Schema, path: Path, value: Value | UnsetType) -> None:
    """Refuse a local override the schema does not allow; return None when allowed.

    Raises :class:`LocalOverrideRefused` naming the path, the policy and the
    bound for a key the schema does not declare, a key without a local
    policy, or a value outside the key's rules or its local bounds
    (:meth:`KeySpec.check_local`).  Removing an override (``UNSET``) is always
    allowed: it hands the key back to the server.
    """
    if isinstance(value, UnsetType):
        return
    dotted = _dotted(path)
    check_model(value, path)
    spec = schema.keys.get(path)
    if spec is None:
        declared = f"a key declared by schema {schema.name} v{schema.version}"
        enclosing = schema.spec(path)
        if enclosing is not None:
            declared += f" ({enclosing.dotted} is a free-form key: override it whole)"
        raise LocalOverrideRefused(
            path=dotted, policy="undeclared keys have no local policy", bound=declared, value=value
        )
    if not spec.local.allowed:
        raise LocalOverrideRefused(
            path=dotted, policy=describe_local_policy(spec), bound="no local override", value=value
        )
    problems = spec.check_local(value)
    if problems:
        raise LocalOverrideRefused(
            path=dotted, policy=describe_local_policy(spec), bound=problems[0], value=value
        )


def _dotted(path: Path) -> str:
    try:
        return format_path(path)
    except PathError:
        return repr(path)


@dataclass(frozen=True, slots=True, eq=False)
class JournalEntry:
    """One local change: ``value`` at ``path`` (``UNSET`` removes the override).

    ``path`` must be a non-empty path with a dotted text form (the journal
    file stores it as text).  Equality compares values by encoding
    (:func:`~edgecfg.core.tree.values_equal`), so ``1`` and ``1.0`` differ.
    """

    path: Path
    value: Value | UnsetType
    reason: str
    at: Timestamp
    sequence: int

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple) or not self.path:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise PathError("a journal entry needs a non-empty path", path=repr(self.path))
        format_path(self.path)  # raises PathError for keys without a text form
        if not isinstance(self.value, UnsetType):
            check_model(self.value, self.path)
        if type(self.reason) is not str:
            raise JournalError(
                f"a journal entry's reason must be text, got {show_value(self.reason)}"
            )
        check_model(self.reason, self.path)  # Unicode text, as the journal file needs
        if type(self.sequence) is not int or self.sequence < 1:
            raise JournalError(
                f"journal sequence must be an integer >= 1, got {show_value(self.sequence)}"
            )

    def __hash__(self) -> int:
        return hash((self.path, self.sequence, self.at))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JournalEntry):
            return NotImplemented
        return (
            self.path == other.path
            and self.reason == other.reason
            and self.at == other.at
            and self.sequence == other.sequence
            and values_equal(self.value, other.value)
        )

    @property
    def dotted(self) -> str:
        """The path in dotted text form."""
        return format_path(self.path)

    @property
    def removes(self) -> bool:
        """True when this entry removes the override at its path."""
        return self.value is UNSET


def entry_size_bound(entry: JournalEntry) -> int:
    """An upper bound on the bytes :func:`edgecfg.wire.journal.frame` writes for ``entry``.

    Counts every CBOR head at its longest (9 bytes), so it never
    underestimates; :meth:`Journal.compact` uses it for ``max_bytes``.
    """
    texts = (entry.dotted, entry.reason, entry.at.node)
    size = FRAME_OVERHEAD + 1 + _HEAD  # framing, the record array, the sequence
    size += sum(_HEAD + len(text.encode("utf-8")) for text in texts)
    size += 1 + 2 * _HEAD  # the timestamp array and its two numbers
    if not isinstance(entry.value, UnsetType):
        size += _value_size_bound(entry.value)
    return size


def _value_size_bound(value: Value) -> int:
    if isinstance(value, str):
        return _HEAD + len(value.encode("utf-8"))
    if isinstance(value, bytes):
        return _HEAD + len(value)
    if isinstance(value, list):
        return _HEAD + sum(_value_size_bound(item) for item in value)
    if isinstance(value, dict):
        return _HEAD + sum(
            _value_size_bound(key) + _value_size_bound(item) for key, item in value.items()
        )
    return _HEAD  # null, bool, int and float all fit in a 9-byte item


@dataclass(frozen=True, slots=True)
class Journal:
    """An append-only sequence of :class:`JournalEntry`, as an immutable value.

    ``last_sequence`` is the highest sequence ever appended (it survives
    compaction); ``acknowledged`` the highest one the gateway confirmed.
    """

    entries: tuple[JournalEntry, ...] = ()
    last_sequence: int = 0
    acknowledged: int = 0

    def __post_init__(self) -> None:
        previous = 0
        for entry in self.entries:
            if entry.sequence <= previous:
                raise JournalError(
                    f"journal sequence {entry.sequence} ({entry.dotted}) does not follow "
                    f"{previous}: sequences must strictly increase"
                )
            previous = entry.sequence
        if self.last_sequence < previous:
            raise JournalError(
                f"last_sequence {self.last_sequence} is below the newest entry's {previous}"
            )
        if not 0 <= self.acknowledged <= self.last_sequence:
            raise JournalError(
                f"acknowledged {self.acknowledged} outside [0, {self.last_sequence}]"
            )

    @classmethod
    def of(cls, entries: Iterable[JournalEntry], *, acknowledged: int = 0) -> Journal:
        """A journal holding ``entries`` (in sequence order), e.g. as read from a file.

        ``last_sequence`` becomes the newest entry's sequence, or
        ``acknowledged`` when that is higher (entries the gateway confirmed
        were lost with a torn file tail): sequence numbers are never reused.
        """
        items = tuple(entries)
        last = items[-1].sequence if items else 0
        return cls(items, max(last, acknowledged), acknowledged)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def next_sequence(self) -> int:
        """The sequence number the next entry must carry."""
        return self.last_sequence + 1

    def append(self, entry: JournalEntry) -> Journal:
        """This journal with ``entry`` added; its sequence must exceed every earlier one."""
        if entry.sequence <= self.last_sequence:
            raise JournalError(
                f"journal sequence {entry.sequence} ({entry.dotted}) must be above "
                f"{self.last_sequence}: sequence numbers are never reused"
            )
        return Journal((*self.entries, entry), entry.sequence, self.acknowledged)

    def record(
        self, path: Path, value: Value | UnsetType, *, reason: str, at: Timestamp
    ) -> tuple[Journal, JournalEntry]:
        """Append a change with the next sequence number; returns the journal and the entry."""
        entry = JournalEntry(path, value, reason, at, self.next_sequence)
        return self.append(entry), entry

    def overrides(self) -> dict[Path, JournalEntry]:
        """The local overrides in effect: the latest entry per path, without removals."""
        latest: dict[Path, JournalEntry] = {}
        for entry in self.entries:
            if entry.value is UNSET:
                latest.pop(entry.path, None)
            else:
                latest[entry.path] = entry
        return latest

    def since(self, sequence: int) -> tuple[JournalEntry, ...]:
        """The entries with a sequence above ``sequence``, oldest first."""
        return tuple(entry for entry in self.entries if entry.sequence > sequence)

    def pending(self) -> tuple[JournalEntry, ...]:
        """The entries the gateway has not acknowledged yet: ``since(acknowledged)``."""
        return self.since(self.acknowledged)

    def acknowledge(self, sequence: int) -> Journal:
        """This journal with everything up to ``sequence`` acknowledged by the gateway.

        Idempotent, and an older acknowledgement than the current one (a
        reordered reply) changes nothing.  Raises :class:`UnknownSequence`
        for a sequence this journal never issued.
        """
        if sequence > self.last_sequence:
            raise UnknownSequence(sequence=sequence, last_sequence=self.last_sequence)
        if sequence <= self.acknowledged:
            return self
        return Journal(self.entries, self.last_sequence, sequence)

    def compact(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        size_of: Callable[[JournalEntry], int] = entry_size_bound,
    ) -> Journal:
        """A journal with the same :meth:`overrides` and :meth:`pending` latest
        entries, and as much of the newest history as the bounds allow.

        Always kept (the *essential* entries): the latest entry of each path
        when it sets a value or is not acknowledged yet (the gateway must
        learn of the removal), and the newest entry (so a journal file read
        back continues the sequence).  Then older entries are kept newest
        first while the total stays within ``max_entries`` and ``max_bytes``
        (measured with ``size_of``); the first one that does not fit ends the
        history.  Essential entries are kept even when they alone exceed the
        bounds: there is at most one per overridable key.
        """
        if max_entries < 0 or max_bytes < 0:
            raise JournalError(
                f"compaction bounds must not be negative (max_entries {max_entries}, "
                f"max_bytes {max_bytes})"
            )
        entries = self.entries
        latest: dict[Path, int] = {entry.path: index for index, entry in enumerate(entries)}
        keep = {
            index
            for index in latest.values()
            if entries[index].value is not UNSET or entries[index].sequence > self.acknowledged
        }
        if entries:
            keep.add(len(entries) - 1)
        count = len(keep)
        size = sum(size_of(entries[index]) for index in keep)
        for index in range(len(entries) - 1, -1, -1):
            if index in keep:
                continue
            extra = size_of(entries[index])
            if count + 1 > max_entries or size + extra > max_bytes:
                break
            keep.add(index)
            count += 1
            size += extra
        kept = tuple(entries[index] for index in sorted(keep))
        return Journal(kept, self.last_sequence, self.acknowledged)
