"""Canonical CBOR encoding and strict, bounded decoding of configuration values.

Encoding follows RFC 8949 §4.2.1 (core deterministic encoding): preferred
(shortest) argument and float forms, map keys sorted bytewise by their
encoding, definite lengths only.  :func:`etag` hashes that encoding.

Decoding is strict because its input comes from the network and from disk.
A pure-Python scanner walks the bytes once and rejects, with the byte offset,
everything outside the model (DESIGN §3) or outside the limits:

- truncated items, reserved additional-information values, indefinite
  lengths (RFC 8949 §3.2), a stray "break";
- tags, ``undefined`` and other simple values (not configuration values);
- map keys that are not text strings, duplicate keys (RFC 8949 §5.6);
- invalid UTF-8 in text strings (RFC 8949 §3.1, major type 3);
- nesting deeper than ``max_depth``, inputs longer than ``max_bytes``;
- declared lengths larger than the bytes that remain (so a 5-byte item
  cannot announce four billion elements);
- trailing bytes after the top-level item (cbor2 would silently ignore them).

Only once the scan succeeds does cbor2 build the Python value, so cbor2's own
parser never sees bytes the scanner did not accept.
"""

from __future__ import annotations

import hashlib
import io
import marshal
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, cast

import cbor2

from edgecfg.core.delta import canonical_keys, node_count
from edgecfg.core.ids import ETAG_SIZE, ETag
from edgecfg.core.tree import Tree, Value, canonical_key_order, check_model, is_map
from edgecfg.errors import DecodeError, EncodeError, ModelError, UsageError

MAX_DEPTH_LIMIT: Final = 500


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds for :func:`decode`; the defaults suit a gateway or a Pi-class agent."""

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64

    def __post_init__(self) -> None:
        # The scanner recurses once per level; RFC 8949's deepest good vectors
        # (over 500 levels) are exactly what a bounded decoder may refuse.
        if not 0 <= self.max_depth <= MAX_DEPTH_LIMIT:
            raise UsageError(f"max_depth {self.max_depth} outside [0, {MAX_DEPTH_LIMIT}]")
        if self.max_bytes < 1:
            raise UsageError(f"max_bytes {self.max_bytes} must be positive")


DEFAULT_LIMITS: Final = DecodeLimits()

_MAJOR_UINT, _MAJOR_NINT, _MAJOR_BYTES, _MAJOR_TEXT = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_AI_FALSE, _AI_TRUE, _AI_NULL, _AI_UNDEFINED = 20, 21, 22, 23
_AI_SIMPLE_1BYTE, _AI_FLOAT16, _AI_FLOAT64 = 24, 25, 27
_AI_INDEFINITE = 31
_TAG_DECIMAL = 4


def encode(value: Value) -> bytes:
    """Canonical CBOR bytes of a model value (RFC 8949 §4.2.1).

    Raises :class:`EncodeError` naming the path of the first value outside
    the model (a tuple, a set, an integer beyond 64 bits, a non-text key).
    """
    try:
        check_model(value)
    except ModelError as error:
        raise EncodeError(error.reason, path=error.path) from None
    return cbor2.dumps(value, canonical=True)


def encode_unchecked(value: Value) -> bytes:
    """:func:`encode` without the model check, for values edgecfg itself assembled
    from checked parts (a decoded delta applied to a checked base).  Never pass
    caller-supplied values: a tuple or a big integer would encode silently.
    """
    return cbor2.dumps(value, canonical=True)


def dump_record(value: object) -> bytes:
    """CBOR of a record edgecfg keeps for itself (the gateway's analysis state
    of a device): cbor2's C codec as is, neither canonical nor checked
    against the model; never for what is sent, hashed or read from a peer."""
    return cbor2.dumps(value)


def load_record(data: bytes) -> object:
    """A record :func:`dump_record` wrote (edgecfg's own bytes, never a peer's)."""
    return cast(object, cbor2.loads(data))


def content_key(value: Value) -> bytes | None:
    """Bytes that stand for ``value``'s content and exact types: a cache key.

    The :mod:`marshal` serialisation (format 2: no back-references, so equal
    contents give equal bytes), one C pass about eight times cheaper than
    :func:`encode`.  Equal bytes mean equal contents with equal key orders
    and equal types: marshal refuses subclasses of the builtins and keeps
    lists and tuples, ints, bools and floats, ``0.0`` and ``-0.0`` apart.
    The one model-relevant blur: a ``bytearray`` or ``memoryview`` leaf
    gives the bytes of the equal ``bytes`` leaf (and encodes like it in
    CBOR too).  None for what marshal cannot serialise.
    """
    try:
        return marshal.dumps(value, _MARSHAL_VERSION)
    except (ValueError, RecursionError):
        return None


_MARSHAL_VERSION: Final = 2


@dataclass(frozen=True, slots=True)
class ContentKey:
    """A :func:`content_key` with the serialisation of each root entry kept.

    ``parts``: per entry of ``root`` in iteration order, a map's key and
    value (or a list's item) serialised: ``key`` is their concatenation in
    marshal's frame (``{`` ... ``0`` for a map, ``[`` and a 4-byte count for
    a list), byte for byte what :func:`content_key` gives.  A value that
    shares most of its root entries with ``root`` (the result of a delta,
    which keeps the base's untouched sections as the very same objects) gets
    its key spliced from these parts by :func:`spliced_content_key` instead
    of serialising the whole tree again.
    """

    key: bytes
    root: Value
    parts: tuple[bytes, ...]


def content_key_parts(value: Value) -> ContentKey | None:
    """:func:`content_key` of ``value``, with its root entries' parts (None as there)."""
    dumps = marshal.dumps
    try:
        if type(value) is dict:
            entries = cast(dict[str, Value], value)
            parts = tuple(
                [dumps(key, _MARSHAL_VERSION) + dumps(item, _MARSHAL_VERSION)
                 for key, item in entries.items()]
            )  # fmt: skip
            return ContentKey(b"".join((b"{", *parts, b"0")), value, parts)
        if type(value) is list:
            items = cast(list[Value], value)
            parts = tuple([dumps(item, _MARSHAL_VERSION) for item in items])
            return ContentKey(b"".join((_list_head(len(items)), *parts)), value, parts)
        return ContentKey(dumps(value, _MARSHAL_VERSION), value, ())
    except (ValueError, RecursionError):
        return None


def spliced_content_key(value: Value, base: ContentKey) -> bytes | None:
    """:func:`content_key` of ``value``, reusing ``base``'s parts for the root
    entries ``value`` shares with ``base.root`` (see :func:`spliced_content_key_parts`)."""
    spliced = spliced_content_key_parts(value, base)
    return None if spliced is None else spliced.key


def spliced_content_key_parts(value: Value, base: ContentKey) -> ContentKey | None:
    """:func:`content_key_parts` of ``value``, reusing ``base``'s parts for the
    root entries ``value`` shares with ``base.root`` (the same objects under the
    same keys; a list's items by identity).  The caller vouches that
    ``base.root`` still holds the content ``base`` was made from (it was
    keyed within the same call).  Work: the entries that are not shared.

    The parts returned let the next call that meets ``value`` again (a chain:
    each delta applied to the last result) check its content with one
    :func:`content_key` pass instead of serialising it entry by entry.
    """
    dumps = marshal.dumps
    try:
        if type(value) is dict and type(base.root) is dict:
            old = cast(dict[str, Value], base.root)
            shared = dict(zip(old, zip(old.values(), base.parts, strict=True), strict=True))
            parts: list[bytes] = []
            for key, item in cast(dict[str, Value], value).items():
                found = shared.get(key)
                if found is not None and found[0] is item:
                    parts.append(found[1])
                else:
                    parts.append(dumps(key, _MARSHAL_VERSION) + dumps(item, _MARSHAL_VERSION))
            return ContentKey(b"".join((b"{", *parts, b"0")), value, tuple(parts))
        if type(value) is list and type(base.root) is list:
            items = cast(list[Value], value)
            known = {id(item): part for item, part in zip(base.root, base.parts, strict=True)}
            listed = tuple([known.get(id(item)) or dumps(item, _MARSHAL_VERSION) for item in items])
            return ContentKey(b"".join((_list_head(len(items)), *listed)), value, listed)
    except (ValueError, RecursionError):
        return None
    return content_key_parts(value)  # another top-level type: nothing to share


def _list_head(count: int) -> bytes:
    """marshal's list header: the type code and a 4-byte little-endian count."""
    return b"[" + count.to_bytes(4, "little", signed=True)


class SubtreeEncoder:
    """Canonical encoding that reuses the encodings of maps it has seen.

    Effective configurations of devices that share groups share most of their
    maps (folds are copy-on-write), so a fleet's configs are encoded once per
    distinct map, not once per device.  Output is byte-identical to
    :func:`encode_unchecked`.  The cache holds each map it encoded (so ids
    cannot be reused) and is cleared past ``max_entries`` maps or
    ``max_bytes`` bytes of their encodings (the maps it keeps alive cost a few
    times that again); it relies on the trees being immutable values, as
    everything edgecfg builds is.

    The byte bound is what keeps a long-running gateway's memory flat: each
    edit makes new maps for the devices it reaches, so over weeks the count
    bound alone let the cache hold gigabytes (issue 16's longevity run).
    """

    __slots__ = ("_bytes", "_cache", "_counts", "_keys", "_orders", "max_bytes", "max_entries")

    def __init__(self, max_entries: int = 500_000, max_bytes: int = 32 * 2**20) -> None:
        self._cache: dict[int, tuple[object, bytes]] = {}
        self._counts: dict[int, int] = {}  # node counts of maps in _cache
        self._orders: dict[tuple[str, ...], list[str]] = {}
        self._keys: dict[str, bytes] = {}
        self._bytes = 0  # encodings held in _cache
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    @property
    def held_bytes(self) -> int:
        """Bytes of encodings the cache holds now."""
        return self._bytes

    def encode(self, value: Value) -> bytes:
        if len(self._cache) > self.max_entries or self._bytes > self.max_bytes:
            self._cache.clear()
            self._counts.clear()
            self._orders.clear()
            self._bytes = 0
        if type(value) is dict:
            return self._map(value)  # type: ignore[arg-type]
        return cbor2.dumps(value, canonical=True)

    def count(self, node: Value) -> int | None:
        """The node count of a map this encoder encoded (see
        :func:`edgecfg.core.delta.node_count`), counted once; None for others."""
        key = id(node)
        hit = self._cache.get(key)
        if hit is None or hit[0] is not node:
            return None
        found = self._counts.get(key)
        if found is None:
            found = 1
            for child in cast(dict[str, Value], node).values():
                kind = type(child)
                if kind is dict:
                    below = self.count(child)
                    found += below if below is not None else node_count(child)
                else:
                    found += node_count(child) if kind is list else 1
            self._counts[key] = found
        return found

    def same(self, a: Value, b: Value) -> bool:
        """Whether two maps this encoder encoded have the same encoding, so
        are equal (False when either one is not in its cache)."""
        cache = self._cache
        one, two = cache.get(id(a)), cache.get(id(b))
        return (
            one is not None and two is not None and one[0] is a and two[0] is b and one[1] == two[1]
        )

    def _map(self, node: dict[str, Value]) -> bytes:
        cache = self._cache
        hit = cache.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        if dict not in map(type, node.values()):
            data = cbor2.dumps(node, canonical=True)  # no maps below: one C call
        else:
            keys = tuple(node)  # copies keep their order: the sort is usually known
            order = self._orders.get(keys)
            if order is None:
                order = sorted(keys, key=canonical_key_order)
                self._orders[keys] = order
            parts = [_head(_MAJOR_MAP, len(node))]
            for key in order:
                encoded_key = self._keys.get(key)
                if encoded_key is None:
                    encoded_key = self._keys[key] = cbor2.dumps(key)
                parts.append(encoded_key)
                child = node[key]
                if type(child) is dict:
                    known = cache.get(id(child))
                    parts.append(
                        known[1] if known is not None and known[0] is child else self._map(child)  # type: ignore[arg-type]
                    )
                else:
                    parts.append(cbor2.dumps(child, canonical=True))
            data = b"".join(parts)
        cache[id(node)] = (node, data)
        self._bytes += len(data)
        return data


def encode_reusing(
    value: Value,
    assemble: set[int],
    parts: dict[int, bytes],
    tail: tuple[int, int, bytes] | None = None,
) -> bytes:
    """Canonical bytes of ``value`` (no model check), reusing and filling ``parts``.

    ``parts`` maps ``id(node)`` to the node's canonical bytes.  A container
    whose id is in ``assemble`` is put together from its children's bytes;
    any other node is taken from ``parts`` or encoded in one C call and
    remembered there.  Encoding a base with ``assemble`` = the containers a
    delta rebuilt, then the result with ``assemble`` = their replacements,
    costs one encoding of the base plus the change: the result shares every
    other subtree with the base, and those subtrees' bytes are in ``parts``.
    The ids are valid while the values live, so ``parts`` is for one call.
    ``tail`` = (id of a map, n, bytes): that map's last n entries in canonical
    order are ``bytes`` (see :func:`parts_from_bytes`).
    """
    known = parts.get(id(value))
    if known is not None:
        return known
    return _Reuser(assemble, parts, tail).encode(value)


class _Reuser:
    """:func:`encode_reusing`'s walk, with the key encodings and orders it met."""

    __slots__ = ("assemble", "parts", "tail")

    def __init__(
        self, assemble: set[int], parts: dict[int, bytes], tail: tuple[int, int, bytes] | None
    ) -> None:
        self.assemble = assemble
        self.parts = parts
        self.tail = tail

    def encode(self, value: Value) -> bytes:
        key = id(value)
        if key not in self.assemble:
            data = self.parts[key] = cbor2.dumps(value, canonical=True)
            return data
        parts = self.parts
        if type(value) is dict:
            node = cast(dict[str, Value], value)
            order = canonical_keys(tuple(node))
            pieces = [_head(_MAJOR_MAP, len(node))]
            tail = self.tail if self.tail is not None and self.tail[0] == key else None
            for name in order[: len(order) - tail[1]] if tail is not None else order:
                encoded_name = text_item(name)
                child = node[name]
                data = parts.get(id(child))
                if data is None:
                    data = self.encode(child)
                pieces.append(encoded_name)
                pieces.append(data)
            if tail is not None:
                pieces.append(tail[2])
        else:
            items = cast(list[Value], value)
            pieces = [_head(_MAJOR_ARRAY, len(items))]
            for item in items:
                data = parts.get(id(item))
                pieces.append(data if data is not None else self.encode(item))
        data = parts[key] = b"".join(pieces)
        return data


def parts_from_bytes(
    value: Value,
    data: bytes,
    descend: set[int],
    parts: dict[int, bytes],
    *,
    root_tail: int = 0,
    tables: tuple[Sequence[int], Sequence[int]] | None = None,
) -> bytes | None:
    """Fill ``parts`` (see :func:`encode_reusing`) from ``data``, the canonical
    encoding of ``value``, for the children of the containers in ``descend``.

    Each such child's bytes are sliced out of ``data``; a child outside
    ``descend`` is skipped by cbor2's C decoder, so the cost is that of
    decoding the containers on the way, not of encoding the value again.
    The last ``root_tail`` entries of a map at the root are neither decoded
    nor sliced one by one: their bytes, keys included, are returned whole
    (``b""`` when ``root_tail`` is 0).  Returns None (``parts`` then partly
    filled, still correct) when ``data`` turns out not to be the canonical
    encoding of ``value``.  With ``tables`` = (the value's preorder size
    table, :func:`node_lengths` of ``data``), children are skipped by looking
    their lengths up: the cost is the width of the containers descended into.
    """
    if id(value) not in descend:
        return b""
    slicer = _Slicer(data, descend, parts, tables)
    try:
        if root_tail and type(value) is dict:
            return data[slicer.walk(value, 0, 0, root_tail) :]
        parts[id(value)] = data[: slicer.walk(value, 0, 0)]
    except (_NotCanonical, IndexError, cbor2.CBORDecodeError):
        return None
    return b""


class _Slicer:
    """:func:`parts_from_bytes`'s walk.  A class, not nested functions: two
    closures that call each other hold each other through their cells, a
    cycle that only the collector frees (and with it the call's decoder
    and tables), in whichever later call it happens to run."""

    __slots__ = ("data", "decoder", "descend", "lengths", "parts", "sizes", "stream")

    def __init__(
        self,
        data: bytes,
        descend: set[int],
        parts: dict[int, bytes],
        tables: tuple[Sequence[int], Sequence[int]] | None,
    ) -> None:
        self.data = data
        self.descend = descend
        self.parts = parts
        self.sizes, self.lengths = tables if tables is not None else ((), ())
        self.stream: io.BytesIO | None = None
        self.decoder: cbor2.CBORDecoder | None = None

    def skip(self, position: int, index: int) -> int:
        if self.lengths:
            return position + self.lengths[index]
        if self.stream is None or self.decoder is None:
            self.stream = io.BytesIO(self.data)
            self.decoder = cbor2.CBORDecoder(self.stream)
        self.stream.seek(position)
        self.decoder.decode()
        return self.stream.tell()

    def walk(self, node: Value, position: int, index: int, tail: int = 0) -> int:
        data, sizes = self.data, self.sizes
        major, length, position = _read_head(data, position)
        index += 1  # the first child's
        if type(node) is dict:
            entries = cast(dict[str, Value], node)
            if major != _MAJOR_MAP or length != len(entries):
                raise _NotCanonical
            order = canonical_keys(tuple(entries))
            for name in order[: len(order) - tail]:
                key = text_item(name)
                if data[position : position + len(key)] != key:
                    raise _NotCanonical
                position = self.child(entries[name], position + len(key), index)
                index += sizes[index] if sizes else 0
        else:
            items = cast(list[Value], node)
            if major != _MAJOR_ARRAY or length != len(items):
                raise _NotCanonical
            for item in items:
                position = self.child(item, position, index)
                index += sizes[index] if sizes else 0
        return position

    def child(self, node: Value, position: int, index: int) -> int:
        if id(node) in self.descend and type(node) in (dict, list):
            end = self.walk(node, position, index)
        else:
            end = self.skip(position, index)
        self.parts.setdefault(id(node), self.data[position:end])
        return end


def node_lengths(data: bytes) -> list[int]:
    """How many bytes each node of the value ``data`` encodes to, by preorder number.

    Nodes are values, not map keys, numbered as :mod:`edgecfg.core.delta`
    numbers them when ``data`` is canonical (map entries in encoded key
    order).  ``data`` must be well-formed definite-length CBOR (as
    :func:`encode` writes); raises :class:`DecodeError` otherwise.  A
    node's length does not depend on where it sits, so a tree that keeps a
    subtree keeps that subtree's rows.
    """
    return node_tables(data)[1]


def node_tables(data: bytes) -> tuple[list[int], list[int]]:
    """:func:`~edgecfg.core.delta.size_table` of the value ``data`` encodes, and
    its :func:`node_lengths`, in one pass over the bytes.

    When ``data`` is the canonical encoding of a value, the first table is
    that value's size table (map entries in encoded key order are the
    canonical order): a holder of the bytes need not walk the tree as well.
    """
    ends: list[int] = []
    starts: list[int] = []
    sizes: list[int] = []
    open_: list[list[int]] = []  # [entries left, node number, 1 for a map]
    position = 0
    try:
        while True:
            if open_ and open_[-1][2]:  # a map entry: skip its key
                _major, length, position = _read_head(data, position)
                position += length
            starts.append(position)
            major, argument, position = _read_head(data, position)
            number = len(ends)
            ends.append(position)
            sizes.append(1)
            if major in (_MAJOR_BYTES, _MAJOR_TEXT):
                position += argument
                ends[number] = position
            elif major in (_MAJOR_ARRAY, _MAJOR_MAP) and argument:
                open_.append([argument, number, major == _MAJOR_MAP])
                continue
            while open_:  # this item is done, and so may be its containers
                top = open_[-1]
                top[0] -= 1
                if top[0]:
                    break
                ends[top[1]] = position
                sizes[top[1]] = len(ends) - top[1]
                open_.pop()
            if not open_:
                break
    except (_NotCanonical, IndexError):
        raise DecodeError("malformed CBOR", offset=position) from None
    if position != len(data):
        raise DecodeError(f"{len(data) - position} trailing bytes", offset=position)
    return sizes, [end - start for start, end in zip(starts, ends, strict=True)]


@lru_cache(maxsize=8192)
def text_item(text: str) -> bytes:
    """The CBOR encoding of a text string (cached: map keys recur)."""
    return cbor2.dumps(text)


class _NotCanonical(Exception):
    """Bytes that do not encode the value they were said to encode."""


def _read_head(data: bytes, position: int) -> tuple[int, int, int]:
    """(major type, argument, position after the head) of the item at ``position``."""
    initial = data[position]
    info = initial & 0x1F
    if info < 24:
        return initial >> 5, info, position + 1
    if info > 27:
        raise _NotCanonical
    width = 1 << (info - 24)
    end = position + 1 + width
    return initial >> 5, int.from_bytes(data[position + 1 : end], "big"), end


def _head(major: int, argument: int) -> bytes:
    """An item head in preferred (shortest) form, RFC 8949 §3 and §4.2.1."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * width):
            return bytes([major << 5 | info]) + argument.to_bytes(width, "big")
    raise EncodeError(f"length {argument} does not fit a CBOR head", path="")


@dataclass(frozen=True, slots=True)
class Encoded:
    """A configuration together with its canonical encoding and ETag.

    The gateway serves and caches encodings and the agent stores them, so
    both hold configurations in this form; passing it to ``make_delta`` and
    ``apply_delta`` spares them re-encoding (the dominant cost for large
    configs).  Build it with :meth:`of` or :meth:`from_bytes`, never by hand.
    """

    tree: Tree
    cbor: bytes
    etag: ETag

    @classmethod
    def of(cls, tree: Tree) -> Encoded:
        """Encode ``tree`` (checked against the model; a configuration is a map here).

        Values of any other top-level type are model values too (``encode``,
        ``etag`` and the delta functions take them), but the fleet's
        configurations are maps by construction, and so is this holder.
        """
        if not is_map(tree):
            raise EncodeError(
                f"an Encoded configuration is a map, got {type(tree).__name__}; "
                "use encode() or the delta functions for other values",
                path="",
            )
        blob = encode(tree)
        return cls(tree, blob, etag_of_bytes(blob))

    @classmethod
    def from_bytes(cls, data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Encoded:
        """Decode a configuration strictly; re-encodes when ``data`` was not canonical."""
        tree = decode_tree(data, limits=limits)
        blob = encode_unchecked(tree)
        return cls(tree, blob, etag_of_bytes(blob))

    @classmethod
    def stored(cls, data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Encoded:
        """Bytes edgecfg itself stored as canonical: decoded strictly, not re-encoded.

        The ETag is that of the bytes as given; a caller that looked them up
        by ETag compares the two to catch anything that was not canonical.
        """
        return cls(decode_tree(data, limits=limits), data, etag_of_bytes(data))

    @classmethod
    def trusted(cls, tree: Tree, *, encoder: SubtreeEncoder | None = None) -> Encoded:
        """Encode a tree edgecfg assembled itself from checked parts (no model check)."""
        blob = encoder.encode(tree) if encoder is not None else encode_unchecked(tree)
        return cls(tree, blob, etag_of_bytes(blob))


def encoded(config: Tree | Encoded) -> Encoded:
    """``config`` as :class:`Encoded`, encoding it only when needed."""
    return config if isinstance(config, Encoded) else Encoded.of(config)


def etag_of_bytes(encoding: bytes) -> ETag:
    """ETag of an already canonical encoding: SHA-256, first 8 bytes (DESIGN §3)."""
    return ETag(hashlib.sha256(encoding).digest()[:ETAG_SIZE])


def etag(value: Value) -> ETag:
    """ETag of a model value: the first 8 bytes of SHA-256 of :func:`encode`."""
    return etag_of_bytes(encode(value))


def decode(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Value:
    """Decode exactly one model value from ``data``; strict and bounded.

    Raises :class:`DecodeError` (with ``offset``) for anything the module
    docstring lists.  Non-canonical but well-formed encodings are accepted.
    """
    return decode_extended(data, limits=limits, int_keys=False)


def decode_extended(
    data: bytes,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    int_keys: bool,
    negative_keys: bool = False,
) -> Value:
    """:func:`decode`, optionally extended for formats built on the model.

    With ``int_keys``, unsigned-integer map keys and decimal fractions
    (tag 4, which cbor2 returns as :class:`decimal.Decimal`) are admitted: the
    delta format uses them for key references and compact floats.  The caller
    must translate both before a value leaves ``wire``.  With
    ``negative_keys`` negative integer keys are admitted too (SenML labels).
    """
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise DecodeError(
            f"input of {len(data)} bytes exceeds the limit of {limits.max_bytes}",
            offset=limits.max_bytes,
        )
    if not data:
        raise DecodeError("empty input, expected one CBOR item", offset=0)
    scanner = _Scanner(data, limits.max_depth, int_keys=int_keys, negative_keys=negative_keys)
    end = scanner.item(0, 0)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after the CBOR item", offset=end)
    decoded = cbor2.loads(
        data,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        max_depth=limits.max_depth + 1,
    )
    return cast(Value, decoded)


def decode_item(
    data: bytes, start: int, *, limits: DecodeLimits = DEFAULT_LIMITS, int_keys: bool = False
) -> tuple[Value, int]:
    """Decode the one item that starts at ``start`` of a larger buffer.

    Returns the value and the offset just after it; offsets in errors are
    relative to ``data``.  Formats that embed CBOR items in a byte stream of
    their own (the delta operations) use this.
    """
    if start >= len(data):
        raise DecodeError("truncated input: expected a CBOR item", offset=start)
    end = _Scanner(data, limits.max_depth, int_keys=int_keys).item(start, 0)
    if end - start > limits.max_bytes:
        raise DecodeError(
            f"item of {end - start} bytes exceeds the limit of {limits.max_bytes}", offset=start
        )
    try:
        value = cbor2.loads(data[start:end], max_depth=limits.max_depth + 1)
    except (cbor2.CBORDecodeError, ArithmeticError) as error:  # pragma: no cover - scanner-guarded
        raise DecodeError(f"undecodable item: {error}", offset=start) from None
    return cast(Value, value), end


def decode_tree(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Tree:
    """Like :func:`decode` but the top-level item must be a map (a configuration)."""
    value = decode(data, limits=limits)
    if not is_map(value):
        raise DecodeError(f"expected a map at the top level, got {type(value).__name__}", offset=0)
    return value


class _Scanner:
    """One pass over the bytes checking everything :func:`decode` promises."""

    __slots__ = ("data", "int_keys", "max_depth", "negative_keys", "size")

    def __init__(
        self, data: bytes, max_depth: int, *, int_keys: bool = False, negative_keys: bool = False
    ) -> None:
        self.data = data
        self.size = len(data)
        self.max_depth = max_depth
        self.int_keys = int_keys
        self.negative_keys = negative_keys

    def head(self, pos: int) -> tuple[int, int, int, int]:
        """Parse an item head at ``pos``: (major, additional info, argument, next pos)."""
        initial = self.data[pos]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info, pos + 1
        if info <= 27:
            width = 1 << (info - 24)
            end = pos + 1 + width
            if end > self.size:
                raise DecodeError(
                    f"truncated head: {width}-byte argument needs {end - self.size} more bytes",
                    offset=pos,
                )
            return major, info, int.from_bytes(self.data[pos + 1 : end], "big"), end
        if info == _AI_INDEFINITE:
            what = (
                "break outside an indefinite-length item"
                if major == 7
                else ("indefinite-length item (not allowed)")
            )
            raise DecodeError(what, offset=pos)
        raise DecodeError(f"reserved additional information {info}", offset=pos)

    def item(self, pos: int, depth: int) -> int:
        """Validate the item at ``pos``; return the position just after it."""
        if pos >= self.size:
            raise DecodeError("truncated input: expected another item", offset=pos)
        major, info, arg, body = self.head(pos)
        if major in (_MAJOR_UINT, _MAJOR_NINT):
            return body
        if major in (_MAJOR_BYTES, _MAJOR_TEXT):
            return self.string(pos, major, arg, body)
        if major in (_MAJOR_ARRAY, _MAJOR_MAP):
            if depth >= self.max_depth:
                raise DecodeError(f"nesting deeper than {self.max_depth}", offset=pos)
            per_entry = 1 if major == _MAJOR_ARRAY else 2
            if arg * per_entry > self.size - body:
                raise DecodeError(
                    f"declared {arg} entries but only {self.size - body} bytes remain",
                    offset=pos,
                )
            if major == _MAJOR_ARRAY:
                for _ in range(arg):
                    body = self.item(body, depth + 1)
                return body
            return self.map_entries(arg, body, depth + 1)
        if major == _MAJOR_TAG:
            if self.int_keys and arg == _TAG_DECIMAL:
                return self.decimal(body, depth)
            raise DecodeError(f"tag {arg} is not a configuration value", offset=pos)
        return self.simple(pos, info)

    def string(self, pos: int, major: int, length: int, body: int) -> int:
        end = body + length
        if end > self.size:
            raise DecodeError(
                f"truncated string: declared {length} bytes, {self.size - body} remain",
                offset=pos,
            )
        if major == _MAJOR_TEXT:
            try:
                self.data[body:end].decode("utf-8")
            except UnicodeDecodeError as error:
                offset = body + error.start
                raise DecodeError("invalid UTF-8 in text string", offset=offset) from None
        return end

    def map_entries(self, count: int, pos: int, depth: int) -> int:
        seen: set[bytes] = set()
        for _ in range(count):
            if pos >= self.size:
                raise DecodeError("truncated map: expected a key", offset=pos)
            major, _info, length, body = self.head(pos)
            if major == _MAJOR_UINT and self.int_keys:
                end, key = body, b"#%d" % length
            elif major == _MAJOR_NINT and self.negative_keys:
                end, key = body, b"#-%d" % length
            elif major != _MAJOR_TEXT:
                raise DecodeError("map key is not a text string", offset=pos)
            else:
                end = self.string(pos, major, length, body)
                key = b'"' + self.data[body:end]
            if key in seen:
                shown = key[1:].decode() if key[:1] == b'"' else key.decode()
                raise DecodeError(f"duplicate map key {shown!r}", offset=pos)
            seen.add(key)
            pos = self.item(end, depth)
        return pos

    def decimal(self, pos: int, depth: int) -> int:
        """RFC 8949 §3.4.4 decimal fraction: [exponent, mantissa], both plain integers."""
        if pos + 3 > self.size or self.data[pos] != 0x82:
            raise DecodeError("decimal fraction must be a 2-element array", offset=pos)
        end = pos + 1
        for _ in range(2):
            major, _info, _arg, end = self.head(end) if end < self.size else (-1, 0, 0, end)
            if major not in (_MAJOR_UINT, _MAJOR_NINT):
                raise DecodeError("decimal fraction parts must be integers", offset=pos)
        del depth
        return end

    def simple(self, pos: int, info: int) -> int:
        if info in (_AI_FALSE, _AI_TRUE, _AI_NULL):
            return pos + 1
        if _AI_FLOAT16 <= info <= _AI_FLOAT64:
            return pos + 1 + (1 << (info - 24))
        if info == _AI_UNDEFINED:
            raise DecodeError("undefined is not a configuration value", offset=pos)
        if info == _AI_SIMPLE_1BYTE:
            value = self.data[pos + 1]
            if value < 32:
                raise DecodeError(f"simple value {value} in two-byte form", offset=pos)
            raise DecodeError(f"simple value {value} is not a configuration value", offset=pos)
        raise DecodeError(f"simple value {info} is not a configuration value", offset=pos)
