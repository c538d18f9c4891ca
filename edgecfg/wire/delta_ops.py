"""Byte encoding of structural delta operations (the body of ``OPS`` deltas).

The body is a byte stream, not one CBOR item, so that the small integers
that dominate it (operation codes, counts) cost one byte up to 127 instead
of 23 (unsigned LEB128 varints).  Values stay CBOR items.

::

    body   = op*
    op     = varint(gap << 3 | opcode) args
    SET    (0) value
    DELETE (1)
    ADD    (2) key value
    RENAME (3) key
    SPLICE (4) varint(prefix) varint(suffix) value        ; text or bytes item
    LIST   (5) varint(runs) { varint(keep) varint(drop) varint(n) value*n }
    TEXT   (6) varint(runs) { varint(keep) varint(drop) value }  ; value: text or bytes
    COPY   (7) key varint(source) varint(len) body   ; nested ops on a copy of node source

    key    = varint(len << 2 | 0) utf8                  ; literal
           | varint(ref << 2 | 1)                       ; key ref
           | varint(ref << 2 | 2) varint(n) varint(len) utf8
                                                        ; first n bytes of key ref + tail
           | varint(ref << 2 | 3) varint(n) varint(len) utf8
                                                        ; head + last n bytes of key ref

``gap`` is the distance from the previous operation's node index (base
preorder, see :mod:`edgecfg.core.delta`).  A *key ref* is a position in the
base's key table (:func:`edgecfg.core.delta.key_table`).  New section names
often share a prefix or suffix with a known key (``tmc2209 stepper_y`` beside
``tmc2209 stepper_x``; ``tmc2209 stepper_x`` beside ``stepper_x``), hence the
third and fourth key forms.

A *value* is one CBOR item of the model, extended in two ways: a map key may
be an unsigned integer (a key ref), and a float may be a decimal fraction
(RFC 8949 §3.4.4, tag 4) when shorter — configuration floats such as
``0.0125`` need 9 bytes as a double and 5 as ``4([-4, 125])``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Final, cast

import cbor2

from edgecfg.core import delta as structural
from edgecfg.core.tree import Value
from edgecfg.errors import DecodeError, DeltaError
from edgecfg.wire.cbor import DecodeLimits, decode_item, encode_unchecked

SET, DELETE, ADD, RENAME, SPLICE, LIST, TEXT, COPY = range(8)
_KEY_TEXT, _KEY_REF, _KEY_PREFIX, _KEY_SUFFIX = 0, 1, 2, 3
_VARINT_MAX_BYTES: Final = 5  # values below 2**35: every count and index we allow


class KeyBook:
    """The base's key table, for writing and reading keys as short references.

    Built lazily: a delta of value changes only never needs it.  ``table``
    is the base's key table when the caller kept it (it depends only on the
    base's content), ``counts`` its :func:`edgecfg.core.delta.key_counts`
    (the table is then sorted from them when needed, without walking the
    base); :attr:`built` is the table once it was needed.
    """

    __slots__ = ("_counts", "_keys", "_positions", "_reversed", "_sorted", "base")

    def __init__(
        self,
        base: Value,
        table: list[str] | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        self.base = base
        self._counts = counts
        self._keys: list[str] | None = None
        self._positions: dict[str, int] = {}
        self._sorted: list[tuple[bytes, int]] = []
        self._reversed: list[tuple[bytes, int]] = []
        if table is not None:
            self._index(table)

    @property
    def built(self) -> list[str] | None:
        """The key table if it was built or given, else None."""
        return self._keys

    @property
    def keys(self) -> list[str]:
        """The key table (:func:`edgecfg.core.delta.key_table` of the base)."""
        if self._keys is None:
            self._index(
                structural.key_table(self.base)
                if self._counts is None
                else structural.keys_by_count(self._counts)
            )
        return cast(list[str], self._keys)

    def _index(self, keys: list[str]) -> None:
        self._positions = {key: position for position, key in enumerate(keys)}
        self._keys = keys

    def _spellings(self) -> None:
        """The sorted tables of the keys' bytes and reversed bytes (for shared prefixes)."""
        if self._sorted or not self.keys:
            return
        raw = [(key.encode("utf-8"), position) for position, key in enumerate(self.keys)]
        self._sorted = sorted(raw)
        self._reversed = sorted((key[::-1], position) for key, position in raw)

    @property
    def positions(self) -> dict[str, int]:
        self.keys  # noqa: B018 - builds the table
        return self._positions

    def value_key(self, key: str) -> str | int:
        """A map key inside a CBOR value: text or a ref to the base's keys, the shorter."""
        position = self.positions.get(key)
        if position is not None and _cbor_uint_size(position) < _cbor_text_size(key):
            return position
        return key

    def op_key(self, key: str) -> bytes:
        """An operation's key in its shortest form (literal, ref, shared prefix or suffix)."""
        raw = key.encode("utf-8")
        best = varint(len(raw) << 2 | _KEY_TEXT) + raw
        position = self.positions.get(key)
        if position is not None:
            ref = varint(position << 2 | _KEY_REF)
            return ref if len(ref) < len(best) else best
        self._spellings()
        shared, source = _longest_shared(self._sorted, raw)
        while 0 < shared < len(raw) and raw[shared] & 0xC0 == 0x80:
            shared -= 1  # never split a UTF-8 sequence: the tail stays valid text
        if shared:
            tail = raw[shared:]
            form = varint(source << 2 | _KEY_PREFIX) + varint(shared) + varint(len(tail)) + tail
            best = min(best, form, key=len)
        shared, source = _longest_shared(self._reversed, raw[::-1])
        while 0 < shared < len(raw) and raw[len(raw) - shared] & 0xC0 == 0x80:
            shared -= 1
        if shared:
            head = raw[: len(raw) - shared]
            form = varint(source << 2 | _KEY_SUFFIX) + varint(shared) + varint(len(head)) + head
            best = min(best, form, key=len)
        return best


def _longest_shared(table: list[tuple[bytes, int]], raw: bytes) -> tuple[int, int]:
    """(length, position) of the longest common prefix of ``raw`` with a table entry."""
    at = bisect.bisect_left(table, (raw, -1))
    best, source = 0, 0
    for neighbour, position in table[max(0, at - 1) : at + 1]:
        shared = _common_prefix(neighbour, raw)
        if shared > best:
            best, source = shared, position
    return best, source


def _common_prefix(a: bytes, b: bytes) -> int:
    limit = min(len(a), len(b))
    index = 0
    while index < limit and a[index] == b[index]:
        index += 1
    return index


def _cbor_uint_size(value: int) -> int:
    return 1 if value < 24 else 2 if value < 256 else 3 if value < 65536 else 5


def _cbor_text_size(key: str) -> int:
    length = len(key.encode("utf-8"))
    return length + _cbor_uint_size(length)


def varint(value: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# ---------------------------------------------------------------- encode


class _Memory:
    """What a delta has said so far, which later operations may refer to.

    Both sides build it in the same order while they write or read: every key
    an operation spells out (not as a ref) joins the key table after the
    base's keys (a reader needs the base's table only once it meets a ref),
    and every value item of 3 bytes or more joins the value list.
    A delta often says one new thing several times (``microsteps: 16`` added
    to each stepper, one pin renamed in each section); the repeats then cost
    a key ref or a value ref (tag 6 + index, two bytes) instead of the text.
    """

    __slots__ = ("book", "key_positions", "keys", "value_index", "values")

    def __init__(self, book: KeyBook) -> None:
        self.book = book
        self.keys: list[str] = []
        self.key_positions: dict[str, int] = {}
        self.values: list[Value] = []
        self.value_index: dict[bytes, int] = {}

    def key_position(self, key: str) -> int | None:
        """Where a ref to ``key`` points: its base position, else its first learned one."""
        position = self.book.positions.get(key)
        if position is None:
            learned = self.key_positions.get(key)
            if learned is not None:
                position = len(self.book.keys) + learned
        return position

    def learn_key(self, key: str) -> None:
        self.key_positions.setdefault(key, len(self.keys))
        self.keys.append(key)

    def key_at(self, position: int) -> str | None:
        keys = self.book.keys
        if position < len(keys):
            return keys[position]
        position -= len(keys)
        return self.keys[position] if position < len(self.keys) else None

    def value_key(self, key: str) -> str | int:
        """A map key inside a CBOR value: text or a ref, whichever is shorter."""
        position = self.key_position(key)
        if position is not None and _cbor_uint_size(position) < _cbor_text_size(key):
            return position
        return key


_MIN_REMEMBERED: Final = 3  # a value ref costs 2 bytes: shorter values are not worth one
_TAG_VALUE_REF: Final = 0xC6  # CBOR head of tag 6, then an unsigned index


def encode_ops(
    ops: Sequence[structural.Op], book: KeyBook, *, compact: bool = True, memory: bool = True
) -> bytes:
    """The body bytes for ``ops`` (sorted by index).

    ``compact`` uses key refs inside values and decimal floats; without it,
    values are plain canonical CBOR, which a dictionary compressor primed with
    the base's own encoding matches better.  ``memory`` refers back to keys
    and values the delta said before (see :class:`_Memory`); without it,
    repeats are spelled out again, which a compressor may encode in fewer bits
    than the refs.  Either way the reader decodes the same operations.
    """
    return _Writer(book, compact, memory).ops(ops)


class _Writer:
    __slots__ = ("compact", "floats", "memory", "refer")

    def __init__(self, book: KeyBook, compact: bool, refer: bool) -> None:
        self.memory = _Memory(book)
        self.compact = compact
        self.refer = refer
        self.floats: Callable[[float], object] = _compact_float if compact else _plain

    def ops(self, ops: Sequence[structural.Op]) -> bytes:
        out = bytearray()
        previous = 0
        for op in ops:
            gap, previous = op.index - previous, op.index
            match op:
                case structural.Set(value=value):
                    out += varint(gap << 3 | SET) + self.value(value)
                case structural.Delete():
                    out += varint(gap << 3 | DELETE)
                case structural.Add(key=key, value=value):
                    out += varint(gap << 3 | ADD) + self.key(key)
                    out += self.value(value)
                case structural.Copy(key=key, source=source, ops=nested):
                    out += varint(gap << 3 | COPY) + self.key(key) + varint(source)
                    inner = self.ops(nested)  # after the key: the reader learns it first
                    out += varint(len(inner)) + inner
                case structural.Rename(key=key):
                    out += varint(gap << 3 | RENAME) + self.key(key)
                case structural.Splice(prefix=prefix, suffix=suffix, middle=middle):
                    out += varint(gap << 3 | SPLICE) + varint(prefix) + varint(suffix)
                    out += self.value(middle)
                case structural.TextEdit(runs=text_runs):
                    out += varint(gap << 3 | TEXT) + varint(len(text_runs))
                    for keep, drop, inserted in text_runs:
                        out += varint(keep) + varint(drop) + self.value(inserted)
                case structural.ListEdit(runs=runs):
                    out += varint(gap << 3 | LIST) + varint(len(runs))
                    for keep, drop, inserted in runs:
                        out += varint(keep) + varint(drop) + varint(len(inserted))
                        for item in inserted:
                            out += self.value(item)
        return bytes(out)

    def key(self, key: str) -> bytes:
        memory = self.memory
        position = memory.key_position(key) if self.refer else memory.book.positions.get(key)
        raw = key.encode("utf-8")
        literal = varint(len(raw) << 2 | _KEY_TEXT) + raw
        if position is not None:
            ref = varint(position << 2 | _KEY_REF)
            if len(ref) < len(literal):
                return ref
        memory.learn_key(key)  # spelled out: the reader learns it, so this writer does too
        return literal if position is not None else memory.book.op_key(key)

    def value(self, value: Value) -> bytes:
        memory = self.memory
        keys: Callable[[str], str | int] = _text_key
        if self.compact:
            keys = memory.value_key if self.refer else memory.book.value_key
        # Integer keys and tag 4 are outside the model, so encode() would refuse
        # them; every other part of ``value`` came from a model tree.
        data = cbor2.dumps(_extend(value, keys, self.floats), canonical=True)
        if len(data) < _MIN_REMEMBERED:
            return data
        known = memory.value_index.get(data)
        if known is not None and self.refer:
            ref = bytes([_TAG_VALUE_REF]) + cbor2.dumps(known)
            if len(ref) < len(data):
                return ref
        memory.value_index.setdefault(data, len(memory.values))
        memory.values.append(value)
        return data


def _text_key(key: str) -> str:
    return key


def _extend(
    value: Value, keys: Callable[[str], str | int], floats: Callable[[float], object]
) -> object:
    if isinstance(value, dict):
        return {keys(key): _extend(child, keys, floats) for key, child in value.items()}
    if isinstance(value, list):
        return [_extend(child, keys, floats) for child in cast(list[Value], value)]
    if isinstance(value, float):
        return floats(value)
    return value


def _plain(value: float) -> float:
    return value


def _compact_float(value: float) -> float | Decimal:
    """A decimal fraction when shorter than the float (repr round-trips exactly)."""
    if not math.isfinite(value) or value == 0.0:
        return value
    decimal = Decimal(repr(value))
    if len(cbor2.dumps(decimal)) < len(cbor2.dumps(value, canonical=True)):
        return decimal
    return value


# ---------------------------------------------------------------- decode


def decode_ops(data: bytes, book: KeyBook, limits: DecodeLimits) -> list[structural.Op]:
    """Parse a body back into operations; every malformation is a :class:`DeltaError`."""
    return _Reader(data, _Memory(book), limits).ops()


class _Reader:
    __slots__ = ("data", "key_budget", "limits", "memory", "pos")

    def __init__(self, data: bytes, memory: _Memory, limits: DecodeLimits) -> None:
        self.data = data
        self.memory = memory
        # A one-byte key ref can stand for a long key: bound what refs expand to.
        self.key_budget = limits.max_bytes
        self.limits = limits
        self.pos = 0

    def ops(self) -> list[structural.Op]:
        ops: list[structural.Op] = []
        index = 0
        while self.pos < len(self.data):
            start = self.pos
            code = self.varint("operation code")
            index += code >> 3
            ops.append(self.op(code & 7, index, start))
        return ops

    def op(self, opcode: int, index: int, start: int) -> structural.Op:
        if opcode == SET:
            return structural.Set(index, self.value())
        if opcode == DELETE:
            return structural.Delete(index)
        if opcode == ADD:
            key = self.key()
            return structural.Add(index, key, self.value())
        if opcode == RENAME:
            return structural.Rename(index, self.key())
        if opcode == SPLICE:
            prefix, suffix = self.varint("splice prefix"), self.varint("splice suffix")
            middle = self.value()
            if not isinstance(middle, str | bytes):
                raise DeltaError(
                    f"splice of node {index} at byte {start}: middle must be text or bytes"
                )
            return structural.Splice(index, prefix, suffix, middle)
        if opcode == LIST:
            runs: list[tuple[int, int, tuple[Value, ...]]] = []
            for _ in range(self.varint("list run count")):
                keep, drop = self.varint("list keep"), self.varint("list drop")
                count = self.varint("list insert count")
                runs.append((keep, drop, tuple(self.value() for _ in range(count))))
            return structural.ListEdit(index, tuple(runs))
        if opcode == COPY:
            key = self.key()
            source, length = self.varint("copy source"), self.varint("copy length")
            if self.pos + length > len(self.data):
                raise DeltaError(f"copy of {length} bytes at byte {self.pos} runs past the end")
            nested = _Reader(self.data[self.pos : self.pos + length], self.memory, self.limits)
            nested.key_budget = self.key_budget
            self.pos += length
            copied = tuple(nested.ops())
            self.key_budget = nested.key_budget
            return structural.Copy(index, key, source, copied)
        if opcode == TEXT:
            text_runs: list[tuple[int, int, str | bytes]] = []
            for _ in range(self.varint("text run count")):
                keep, drop = self.varint("text keep"), self.varint("text drop")
                inserted = self.value()
                if not isinstance(inserted, str | bytes):
                    raise DeltaError(f"text edit of node {index}: inserts must be text or bytes")
                text_runs.append((keep, drop, inserted))
            return structural.TextEdit(index, tuple(text_runs))
        raise DeltaError(f"unknown delta opcode {opcode} at byte {start}")

    def varint(self, what: str) -> int:
        value = shift = 0
        for count in range(_VARINT_MAX_BYTES):
            if self.pos >= len(self.data):
                raise DeltaError(f"delta ends inside {what} at byte {self.pos}")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if count and byte == 0:
                    raise DeltaError(f"overlong {what} at byte {self.pos - 1}")
                return value
        raise DeltaError(f"{what} at byte {self.pos} is longer than {_VARINT_MAX_BYTES} bytes")

    def text(self, length: int, what: str) -> str:
        end = self.pos + length
        if end > len(self.data):
            raise DeltaError(f"{what} of {length} bytes runs past the delta end")
        try:
            text = self.data[self.pos : end].decode("utf-8")
        except UnicodeDecodeError:
            raise DeltaError(f"{what} at byte {self.pos} is not UTF-8") from None
        self.pos = end
        return text

    def ref(self, position: int) -> str:
        key = self.memory.key_at(position)
        if key is None:
            known = len(self.memory.book.keys) + len(self.memory.keys)
            raise DeltaError(
                f"key ref {position} at byte {self.pos} outside the {known} keys known so far"
            )
        self.key_budget -= len(key)
        if self.key_budget < 0:
            raise DeltaError(f"key refs expand beyond {self.limits.max_bytes} bytes")
        return key

    def key(self) -> str:
        tagged = self.varint("key")
        form, number = tagged & 3, tagged >> 2
        if form == _KEY_REF:
            return self.ref(number)
        key = self.text(number, "key text") if form == _KEY_TEXT else self.shared_key(form, number)
        self.memory.learn_key(key)
        return key

    def shared_key(self, form: int, number: int) -> str:
        source = self.ref(number).encode("utf-8")
        shared = self.varint("shared key length")
        if shared > len(source):
            raise DeltaError(f"key shares {shared} bytes of a {len(source)}-byte key")
        own = self.text(self.varint("key text length"), "key text").encode("utf-8")
        joined = (
            source[:shared] + own if form == _KEY_PREFIX else own + source[len(source) - shared :]
        )
        try:
            return joined.decode("utf-8")
        except UnicodeDecodeError:
            raise DeltaError(f"shared key part splits a character at byte {self.pos}") from None

    def value(self) -> Value:
        start = self.pos
        if start < len(self.data) and self.data[start] == _TAG_VALUE_REF:
            return self.value_ref()
        try:
            raw, self.pos = decode_item(self.data, start, limits=self.limits, int_keys=True)
        except DecodeError as error:
            raise DeltaError(
                f"corrupt value in delta: {error.reason} at byte {error.offset}"
            ) from None
        value = self.unextend(raw)
        if self.pos - start >= _MIN_REMEMBERED:
            self.memory.values.append(value)
        return value

    def value_ref(self) -> Value:
        start = self.pos
        try:
            index, self.pos = decode_item(self.data, start + 1, limits=self.limits)
        except DecodeError as error:
            raise DeltaError(f"corrupt value ref at byte {start}: {error.reason}") from None
        values = self.memory.values
        if type(index) is not int or not 0 <= index < len(values):
            raise DeltaError(
                f"value ref {index!r} at byte {start} outside the {len(values)} values so far"
            )
        value = values[index]
        # A 2-byte ref can stand for a long value: bound what refs expand to.
        self.key_budget -= len(encode_unchecked(value))
        if self.key_budget < 0:
            raise DeltaError(f"value refs expand beyond {self.limits.max_bytes} bytes")
        return value

    def unextend(self, value: object) -> Value:
        if isinstance(value, dict):
            out: dict[str, Value] = {}
            for key, child in cast(dict[object, object], value).items():
                name = key if isinstance(key, str) else self.ref(cast(int, key))
                if name in out:
                    raise DeltaError(f"key {name!r} appears twice in one delta value")
                out[name] = self.unextend(child)
            return out
        if isinstance(value, list):
            return [self.unextend(child) for child in cast(list[object], value)]
        if isinstance(value, Decimal):
            return float(value)
        return cast(Value, value)
