"""The edgecfg delta format: small, bound to its base and target, strictly decoded.

Layout (all deltas)::

    byte 0      format version (high nibble, now 1) | encoding kind (low nibble)
    bytes 1-2   base check: first 2 bytes of the base's ETag
    bytes 3-4   target check: first 2 bytes of the target's ETag
    bytes 5-    body, by kind

Kinds, one chosen per delta as the smallest:

- ``EMPTY`` (0): base and target are equal; no body.
- ``OPS`` (1): one CBOR array of structural operations (:mod:`edgecfg.core.delta`).
- ``OPS_ZSTD`` (2): the ``OPS`` array compressed by zstd (RFC 8878 frame
  without magic number, dictionary id or checksum, with the content size that
  bounds decompression) with the base's canonical CBOR as a raw-content
  dictionary, so new text that resembles the base costs little.
- ``FULL_ZSTD`` (3): the target's canonical CBOR compressed the same way:
  wins when most of the config changed.
- ``FULL`` (4): the target's canonical CBOR, for an empty or unrelated base.

The checks are short on purpose (DESIGN §7): inside a sync, the CoAP exchange
carries the full ETags (``?from=`` and the ETag option) and the agent checks
the full target ETag; the 2-byte checks catch a wrong base or a corrupted
result outside a sync with probability 1 - 2**-16 each.

``OPS`` array: for each operation, ``code = gap << 3 | opcode`` where ``gap``
is the distance from the previous operation's node index (operations sorted
by index), then its arguments:

==========  ======  =========================================
opcode      name    arguments
==========  ======  =========================================
0           SET     value
1           DELETE  —
2           ADD     key, value
3           RENAME  key
4           SPLICE  prefix, suffix, middle (text or bytes)
5           LIST    [keep, drop, [values...], keep, drop, ...]
==========  ======  =========================================

A *key* (an ADD or RENAME key, or a map key anywhere inside a value) is text,
or an unsigned integer: the position of that key in the base's table of
distinct keys in canonical order, used when it is shorter.  A float inside a
value may be written as a decimal fraction (RFC 8949 §3.4.4, tag 4) when that
is shorter; it decodes to the identical float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from decimal import Decimal
from typing import Final, cast

import zstandard

from edgecfg.core import delta as structural
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Tree, Value
from edgecfg.errors import (
    DecodeError,
    DeltaBaseMismatch,
    DeltaError,
    DeltaIntegrityError,
    UsageError,
)
from edgecfg.wire.cbor import (
    DEFAULT_LIMITS,
    DecodeLimits,
    decode_extended,
    decode_tree,
    encode,
    etag_of_bytes,
)

FORMAT_VERSION: Final = 1
CONTENT_FORMAT_DELTA: Final = 65100
"""Experimental-range CoAP content-format for this delta format (DESIGN §5)."""

EMPTY, OPS, OPS_ZSTD, FULL_ZSTD, FULL = 0, 1, 2, 3, 4
KIND_NAMES: Final = {EMPTY: "empty", OPS: "ops", OPS_ZSTD: "ops+zstd", FULL_ZSTD: "full+zstd",
                     FULL: "full"}  # fmt: skip
HEADER_SIZE: Final = 5
CHECK_SIZE: Final = 2

_SET, _DELETE, _ADD, _RENAME, _SPLICE, _LIST = range(6)
_ZSTD_LEVEL_SMALL: Final = 19
_ZSTD_LEVEL_LARGE: Final = 6
_ZSTD_SMALL_INPUT: Final = 16 * 1024


def make_delta(
    old: Tree,
    new: Tree,
    *,
    schema: Schema | None = None,
    classes: Collection[str] | None = None,
) -> bytes:
    """The smallest delta that turns ``old`` into ``new``, bound to both.

    With ``classes`` (needs ``schema``), only changes of keys whose priority
    class is listed are carried: the result turns ``old`` into a consistent
    intermediate config (see :func:`restrict_to_classes`).
    """
    if classes is not None:
        new = restrict_to_classes(old, new, schema=schema, classes=classes)
    base_bytes, target_bytes = encode(old), encode(new)
    header = _header(EMPTY, base_bytes, target_bytes)
    if base_bytes == target_bytes:
        return header
    candidates = [bytes([header[0] & 0xF0 | FULL]) + header[1:] + target_bytes]
    ops = structural.diff(old, new)
    if ops:
        body = _encode_ops(ops, structural.key_table(old))
        candidates.append(_with_kind(header, OPS) + body)
        plain = _encode_ops(ops, [], compact_floats=False)
        candidates.append(_with_kind(header, OPS_ZSTD) + _compress(plain, base_bytes))
        candidates.append(_with_kind(header, OPS_ZSTD) + _compress(body, base_bytes))
    candidates.append(_with_kind(header, FULL_ZSTD) + _compress(target_bytes, base_bytes))
    return min(candidates, key=len)


def restrict_to_classes(
    old: Tree, new: Tree, *, schema: Schema | None, classes: Collection[str]
) -> Tree:
    """``old`` plus only the changes of ``new`` in the given priority classes.

    Keys the schema does not know count as ``normal``.
    """
    if schema is None:
        raise UsageError("priority classes need a schema (make_delta(..., schema=...))")
    unknown = set(classes) - {"critical", "normal", "bulk"}
    if unknown:
        raise UsageError(f"unknown priority classes {sorted(unknown)}; use critical, normal, bulk")

    def wanted(path: tuple[str, ...]) -> bool:
        spec = schema.spec(path)
        return (spec.priority if spec is not None else "normal") in classes

    return structural.restrict(old, new, wanted=wanted)


def apply_delta(
    old: Tree,
    delta: bytes,
    *,
    schema: Schema | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Tree:
    """Apply ``delta`` to ``old``; the result is checked against the target.

    Raises :class:`DeltaBaseMismatch` when ``old`` is not the delta's base,
    :class:`DeltaIntegrityError` when the result is not the target, and
    :class:`DeltaError` for a malformed delta or one that exceeds ``limits``.
    ``schema`` is accepted for symmetry with :func:`make_delta`.
    """
    del schema  # the format does not depend on it
    delta = bytes(delta)
    if len(delta) < HEADER_SIZE:
        raise DeltaError(
            f"delta of {len(delta)} bytes is shorter than its {HEADER_SIZE}-byte header"
        )
    version, kind = delta[0] >> 4, delta[0] & 0x0F
    if version != FORMAT_VERSION:
        raise DeltaError(f"delta format version {version}; this edgecfg reads {FORMAT_VERSION}")
    if kind not in KIND_NAMES:
        raise DeltaError(f"unknown delta kind {kind}")
    base_bytes = encode(old)
    actual = etag_of_bytes(base_bytes)[:CHECK_SIZE]
    if actual != delta[1:3]:
        raise DeltaBaseMismatch(expected=delta[1:3], actual=actual)
    body = delta[HEADER_SIZE:]
    if kind == EMPTY:
        if body:
            raise DeltaError(f"empty delta carries {len(body)} unexpected bytes")
        result = old
    elif kind == FULL:
        result = _decode_tree(body, limits, HEADER_SIZE)
    elif kind == FULL_ZSTD:
        result = _decode_tree(_decompress(body, base_bytes, limits), limits, None)
    else:
        raw = body if kind == OPS else _decompress(body, base_bytes, limits)
        ops = _decode_ops(
            raw, structural.key_table(old), limits, HEADER_SIZE if kind == OPS else None
        )
        result = cast(Tree, structural.apply(old, ops))
    result_bytes = encode(result)
    if len(result_bytes) > limits.max_bytes:
        raise DeltaError(f"delta result of {len(result_bytes)} bytes exceeds {limits.max_bytes}")
    produced = etag_of_bytes(result_bytes)[:CHECK_SIZE]
    if produced != delta[3:5]:
        raise DeltaIntegrityError(expected=delta[3:5], actual=produced)
    return result


def delta_kind(delta: bytes) -> str:
    """The name of a delta's encoding kind (for reports and benchmarks)."""
    if len(delta) < HEADER_SIZE or delta[0] & 0x0F not in KIND_NAMES:
        raise DeltaError("not an edgecfg delta")
    return KIND_NAMES[delta[0] & 0x0F]


# ---------------------------------------------------------------- header


def _header(kind: int, base_bytes: bytes, target_bytes: bytes) -> bytes:
    return (
        bytes([FORMAT_VERSION << 4 | kind])
        + etag_of_bytes(base_bytes)[:CHECK_SIZE]
        + etag_of_bytes(target_bytes)[:CHECK_SIZE]
    )


def _with_kind(header: bytes, kind: int) -> bytes:
    return bytes([FORMAT_VERSION << 4 | kind]) + header[1:]


def _decode_tree(data: bytes, limits: DecodeLimits, offset: int | None) -> Tree:
    try:
        return decode_tree(data, limits=limits)
    except DecodeError as error:
        raise DeltaError(f"corrupt delta: {_where(error, offset)}") from None


def _where(error: DecodeError, offset: int | None) -> str:
    if offset is None:
        return f"{error.reason} at offset {error.offset} of the decompressed body"
    return f"{error.reason} at byte offset {error.offset + offset}"


# ---------------------------------------------------------------- zstd


def _compress(data: bytes, dictionary: bytes) -> bytes:
    level = (
        _ZSTD_LEVEL_SMALL
        if len(data) + len(dictionary) <= _ZSTD_SMALL_INPUT
        else (_ZSTD_LEVEL_LARGE)
    )
    params = zstandard.ZstdCompressionParameters.from_level(  # pyright: ignore[reportUnknownMemberType]
        level,
        source_size=len(data),
        dict_size=len(dictionary),
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=False,
        write_content_size=True,
        write_dict_id=False,
    )
    compressor = zstandard.ZstdCompressor(
        dict_data=_dictionary(dictionary), compression_params=params
    )
    return compressor.compress(data)


def _dictionary(data: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _decompress(body: bytes, dictionary: bytes, limits: DecodeLimits) -> bytes:
    try:
        size = zstandard.get_frame_parameters(
            body, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        ).content_size
    except zstandard.ZstdError as error:
        raise DeltaError(f"corrupt compressed delta body: {error}") from None
    if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
        raise DeltaError("compressed delta body does not declare its size")
    if size > limits.max_bytes:
        raise DeltaError(f"delta declares {size} bytes, above the limit of {limits.max_bytes}")
    decompressor = zstandard.ZstdDecompressor(
        dict_data=_dictionary(dictionary), format=zstandard.FORMAT_ZSTD1_MAGICLESS
    )
    try:
        out = decompressor.decompress(body, max_output_size=size)
    except zstandard.ZstdError as error:
        raise DeltaError(f"corrupt compressed delta body: {error}") from None
    if len(out) != size:
        raise DeltaError(f"compressed body gave {len(out)} bytes, declared {size}")
    return out


# ---------------------------------------------------------------- operations


def _encode_ops(ops: list[structural.Op], keys: list[str], *, compact_floats: bool = True) -> bytes:
    refs = {key: position for position, key in enumerate(keys)}
    floats = _compact_float if compact_floats else _same_float
    items: list[object] = []
    previous = 0
    for op in ops:
        gap = op.index - previous
        previous = op.index
        match op:
            case structural.Set(value=value):
                items += [gap << 3 | _SET, _keyed(value, refs, floats)]
            case structural.Delete():
                items.append(gap << 3 | _DELETE)
            case structural.Add(key=key, value=value):
                items += [gap << 3 | _ADD, _key(key, refs), _keyed(value, refs, floats)]
            case structural.Rename(key=key):
                items += [gap << 3 | _RENAME, _key(key, refs)]
            case structural.Splice(prefix=prefix, suffix=suffix, middle=middle):
                items += [gap << 3 | _SPLICE, prefix, suffix, middle]
            case structural.ListEdit(runs=runs):
                flat: list[object] = []
                for keep, drop, inserted in runs:
                    flat += [keep, drop, [_keyed(v, refs, floats) for v in inserted]]
                items += [gap << 3 | _LIST, flat]
    return _encode_raw(items)


def _encode_raw(items: list[object]) -> bytes:
    # Integer keys are outside the model, so this bypasses encode()'s check;
    # everything else in ``items`` came from model trees.
    import cbor2  # wire owns cbor2; kept local to mark the one unchecked use

    return cbor2.dumps(items, canonical=True)


def _key_cost(key: str) -> int:
    length = len(key.encode("utf-8"))
    return length + (1 if length < 24 else 2 if length < 256 else 3)


def _ref_cost(position: int) -> int:
    return 1 if position < 24 else 2 if position < 256 else 3 if position < 65536 else 5


def _key(key: str, refs: dict[str, int]) -> str | int:
    position = refs.get(key)
    if position is not None and _ref_cost(position) < _key_cost(key):
        return position
    return key


def _keyed(value: Value, refs: dict[str, int], floats: Callable[[float], object]) -> object:
    if isinstance(value, dict):
        return {_key(key, refs): _keyed(child, refs, floats) for key, child in value.items()}
    if isinstance(value, list):
        return [_keyed(child, refs, floats) for child in cast(list[Value], value)]
    if isinstance(value, float):
        return floats(value)
    return value


def _same_float(value: float) -> float:
    return value


def _compact_float(value: float) -> float | Decimal:
    """A decimal fraction (tag 4) when it is shorter than the binary float.

    Configuration floats are mostly short decimals (``0.0125``, ``23.52``) that
    need a 9-byte double but only 5-6 bytes as [exponent, mantissa]; Python's
    ``repr`` is the shortest text that round-trips, so the value is exact.
    """
    if not math.isfinite(value) or value == 0.0:
        return value
    decimal = Decimal(repr(value))
    if len(_encode_raw([decimal])) < len(_encode_raw([value])):
        return decimal
    return value


def _decode_ops(
    raw: bytes, keys: list[str], limits: DecodeLimits, offset: int | None
) -> list[structural.Op]:
    try:
        items = decode_extended(raw, limits=limits, int_keys=True)
    except DecodeError as error:
        raise DeltaError(f"corrupt delta operations: {_where(error, offset)}") from None
    if not isinstance(items, list):
        raise DeltaError("delta operations must be a CBOR array")
    reader = _OpReader(cast(list[object], items), keys)
    return list(reader)


class _OpReader:
    """Turns the flat operation array back into operations, checking each argument."""

    __slots__ = ("items", "keys", "position")

    def __init__(self, items: list[object], keys: list[str]) -> None:
        self.items = items
        self.keys = keys
        self.position = 0

    def __iter__(self) -> Iterator[structural.Op]:
        index = 0
        while self.position < len(self.items):
            code = self.take_int("operation code")
            index += code >> 3
            opcode = code & 7
            if opcode == _SET:
                yield structural.Set(index, self.value())
            elif opcode == _DELETE:
                yield structural.Delete(index)
            elif opcode == _ADD:
                key = self.key()
                yield structural.Add(index, key, self.value())
            elif opcode == _RENAME:
                yield structural.Rename(index, self.key())
            elif opcode == _SPLICE:
                prefix, suffix = self.take_int("splice prefix"), self.take_int("splice suffix")
                middle = self.take()
                if not isinstance(middle, str | bytes):
                    raise DeltaError(f"splice on node {index}: middle must be text or bytes")
                yield structural.Splice(index, prefix, suffix, middle)
            elif opcode == _LIST:
                yield structural.ListEdit(index, self.runs(index))
            else:
                raise DeltaError(f"unknown delta opcode {opcode} at item {self.position - 1}")

    def take(self) -> object:
        if self.position >= len(self.items):
            raise DeltaError(f"delta operations end early at item {self.position}")
        item = self.items[self.position]
        self.position += 1
        return item

    def take_int(self, what: str) -> int:
        item = self.take()
        if type(item) is not int or item < 0:
            raise DeltaError(f"{what} at item {self.position - 1} must be an unsigned integer")
        return item

    def key(self) -> str:
        return self.resolve_key(self.take())

    def resolve_key(self, key: object) -> str:
        if isinstance(key, str):
            return key
        if type(key) is int and 0 <= key < len(self.keys):
            return self.keys[key]
        raise DeltaError(f"key reference {key!r} outside the base's {len(self.keys)} keys")

    def value(self) -> Value:
        return self.unkey(self.take())

    def unkey(self, value: object) -> Value:
        if isinstance(value, dict):
            out: dict[str, Value] = {}
            for key, child in cast(dict[object, object], value).items():
                name = self.resolve_key(key)
                if name in out:
                    raise DeltaError(f"key {name!r} appears twice in one delta map")
                out[name] = self.unkey(child)
            return out
        if isinstance(value, list):
            return [self.unkey(child) for child in cast(list[object], value)]
        if isinstance(value, Decimal):
            return float(value)
        return cast(Value, value)

    def runs(self, index: int) -> tuple[tuple[int, int, tuple[Value, ...]], ...]:
        flat = self.take()
        if not isinstance(flat, list) or len(cast(list[object], flat)) % 3:
            raise DeltaError(f"list edit on node {index} must be [keep, drop, [values]]...")
        items = cast(list[object], flat)
        runs: list[tuple[int, int, tuple[Value, ...]]] = []
        for start in range(0, len(items), 3):
            keep, drop, inserted = items[start : start + 3]
            if type(keep) is not int or type(drop) is not int or not isinstance(inserted, list):
                raise DeltaError(f"list edit on node {index}: run {start // 3} is malformed")
            values = tuple(self.unkey(v) for v in cast(list[object], inserted))
            runs.append((keep, drop, values))
        return tuple(runs)
