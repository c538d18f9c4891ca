"""The edgecfg delta format: small, bound to its base and target, strictly decoded.

Layout (all deltas)::

    byte 0      format version (bits 7-6, now 2) | encoding kind (bits 5-3)
                | base check (bits 2-0: the top 3 bits of the base's ETag)
    bytes 1-2   target check: first 2 bytes of the target's ETag
    bytes 3-    body, by kind

Format 1 (a 4-byte header with an 8-bit base check) is not read any more: its
first byte, ``0x1k``, names version 0 here, and format-1 readers see 8-11 in
this byte's high nibble, so each side refuses the other's deltas by name.

Kinds, one chosen per delta as the smallest:

- ``EMPTY`` (0): base and target are equal; no body.
- ``OPS`` (1): structural operations (:mod:`edgecfg.core.delta`) in the byte
  encoding of :mod:`edgecfg.wire.delta_ops`.
- ``OPS_ZSTD`` (2): the ``OPS`` array compressed by zstd (RFC 8878 frame
  without magic number, dictionary id, checksum or content size:
  decompression is bounded by the decode limits instead) with the base's
  canonical CBOR as a raw-content dictionary, so new text that resembles the
  base costs little.
- ``FULL_ZSTD`` (3): the target's canonical CBOR compressed the same way:
  wins when most of the config changed.
- ``FULL`` (4): the target's canonical CBOR, for an empty or unrelated base.
- ``OPS_ZSTD_FRAME`` (5), ``FULL_ZSTD_FRAME`` (6): as kinds 2 and 3, but the
  body is the whole zstd frame (frame header and blocks).
- ``OPS_DEFLATE`` (7): the ``OPS`` body as raw deflate (RFC 1951), with the
  last 32 KiB of the base's canonical CBOR as preset dictionary (the window
  zlib's ``zdict`` fills).  On bodies of a hundred bytes or so, zstd's
  block carries tables (Huffman weights, sequence modes) that deflate's
  fixed-code blocks do without: on the shared corpus this kind wins 6 pairs
  in 10 and takes the p90 from 11.1% to 10.4%.  Decompression is bounded by
  the decode limits, and the stream must end exactly at the body's end.

Kinds 2 and 3 carry only the *content of one compressed zstd block*: the
frame header (descriptor and window: fixed here) and the block header (last
block, compressed, size: the rest of the delta) say nothing the delta does
not already say, and they cost 5 bytes, 10% of a median delta.  The reader
puts them back (:func:`_unstrip`).  Output that zstd writes as several
blocks (over 128 KiB) or as a raw or RLE block travels as kind 5 or 6.

Base and target may be any model value: a map, a list (Home Assistant's
``automations.yaml``) or a scalar at the top level, and every kind carries
every one of them (``FULL`` and ``FULL_ZSTD`` decode any top-level item).

The checks are short on purpose (DESIGN §7): inside a sync, the CoAP exchange
carries the full ETags (``?from=`` and the ETag option) and the agent checks
the full 8-byte target ETag.  Outside a sync the 3-bit base check names a
wrong base at once in 7 of 8 cases; in the rest, applying to the wrong base
fails the 16-bit target check (or the structure check) instead, so a wrong
result is accepted with probability below 2**-16 * 2**-3.  Every delta pays
for the header, and the median real delta is ~40 bytes: one header byte is
2-3% of it.
"""

from __future__ import annotations

import contextlib
import zlib
from array import array
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, NamedTuple, TypeAlias, cast

import zstandard

from edgecfg.core import delta as structural
from edgecfg.core.ids import ETag
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Value, check_model, is_map
from edgecfg.errors import (
    DecodeError,
    DeltaBaseMismatch,
    DeltaError,
    DeltaIntegrityError,
    EncodeError,
    ModelError,
    UsageError,
)
from edgecfg.wire.cbor import (
    DEFAULT_LIMITS,
    ContentKey,
    DecodeLimits,
    Encoded,
    content_key,
    content_key_parts,
    decode,
    encode,
    encode_reusing,
    encode_unchecked,
    etag_of_bytes,
    node_tables,
    parts_from_bytes,
    spliced_content_key_parts,
)
from edgecfg.wire.delta_ops import KeyBook, decode_ops, encode_ops

FORMAT_VERSION: Final = 2

EMPTY, OPS, OPS_ZSTD, FULL_ZSTD, FULL, OPS_ZSTD_FRAME, FULL_ZSTD_FRAME, OPS_DEFLATE = range(8)
KIND_NAMES: Final = {EMPTY: "empty", OPS: "ops", OPS_ZSTD: "ops+zstd", FULL_ZSTD: "full+zstd",
                     FULL: "full", OPS_ZSTD_FRAME: "ops+zstd-frame",
                     FULL_ZSTD_FRAME: "full+zstd-frame", OPS_DEFLATE: "ops+deflate"}  # fmt: skip
_OPS_KINDS: Final = frozenset({OPS, OPS_ZSTD, OPS_ZSTD_FRAME, OPS_DEFLATE})
LEGACY_KINDS: Final = frozenset(KIND_NAMES) - {OPS_DEFLATE}
"""The kinds an agent from before ops+deflate (edgecfg agent 1.0) decodes."""
_FULL_KINDS: Final = frozenset({FULL, FULL_ZSTD, FULL_ZSTD_FRAME})
HEADER_SIZE: Final = 3
BASE_CHECK_BITS: Final = 3
TARGET_CHECK_SIZE: Final = 2

_ZSTD_LEVEL_SMALL: Final = 19
_ZSTD_LEVEL_FAST: Final = 2
_ZSTD_LEVEL_LARGE: Final = 6
_ZSTD_SMALL_INPUT: Final = 16 * 1024
_COMPRESS_WORTHWHILE: Final = 32
# zstd is tried on larger operation bodies only: on smaller ones deflate's
# fixed-code blocks do as well (on the shared corpus, trying zstd on bodies
# of 33-64 bytes too changes no percentile, and 1 pair in 1,247), and each
# zstd call loads the base's digested dictionary, which on a large base
# costs more than the rest of the delta.
_ZSTD_WORTHWHILE: Final = 64


def make_delta(
    old: Value | Encoded,
    new: Value | Encoded,
    *,
    schema: Schema | None = None,
    classes: Collection[str] | None = None,
    hints: structural.Hints | None = None,
    kinds: Collection[int] | None = None,
) -> bytes:
    """The smallest delta that turns ``old`` into ``new``, bound to both.

    ``kinds`` limits the kinds it may be (all when None; EMPTY and FULL are
    always among them): :data:`LEGACY_KINDS` for a reader that predates one.

    ``hints`` may tell that two maps are equal without comparing them (a
    :class:`~edgecfg.wire.cbor.SubtreeEncoder` that encoded both sides).

    Either side may be any model value (a map, a list or a scalar at the top
    level: real configuration files such as Home Assistant's
    ``automations.yaml`` are lists) or an :class:`~edgecfg.wire.cbor.Encoded`
    configuration, which spares encoding it again.  With ``classes`` (needs
    ``schema`` and maps on both sides), only changes of keys whose priority
    class is listed are carried: the result turns ``old`` into a consistent
    intermediate config (see :func:`edgecfg.core.delta.restrict_to_classes`).
    """
    known, content = _Known.keyed(old)
    if isinstance(old, Encoded):
        old_value = old.tree
    else:
        if not known.checked:  # checked once per content (see _Known)
            _checked(old)
            known.checked = True
        old_value = old
    new_value = new.tree if isinstance(new, Encoded) else new
    if classes is not None:
        if not (is_map(old_value) and is_map(new_value)):
            raise UsageError("priority classes select keys of maps; both sides must be maps")
        new = new_value = structural.restrict_to_classes(
            old_value, new_value, schema=schema, classes=classes
        )
    book = KeyBook(old_value, known.keys, known.key_counts)
    try:
        diffed = structural.diff_traced(
            old_value,
            new_value,
            weigh=lambda op: len(encode_ops([op], book)),
            sizes=known.sizes,
            hints=hints,
        )
    except ModelError as error:  # a map key of the target is no text
        raise EncodeError(error.reason, path=error.path) from None
    ops = diffed.ops
    if isinstance(new, Encoded):
        base, target = known.side(old_value), _side(new)
    else:
        # The target's bytes are the base's, spliced: parts the diff found
        # equal are equal in encoding, and only the operations' values are new.
        _check_payloads(ops)
        base, target = _spliced_pair(old_value, new_value, diffed, known)
    known.learn(old_value, book)
    if not isinstance(new, Encoded) and known.met <= _CHAIN_MEETINGS:
        # A gateway makes the next delta from this version: it is met already,
        # and its tables can be derived from the base's.
        learnt = _learnt_by_applying(base, ops, known, target.cbor)
        _remember(target if learnt is None else target._replace(learnt=learnt), content,
                  checked=True)  # fmt: skip
    header = _header(EMPTY, base.etag, target.etag)
    if base.cbor == target.cbor:
        return header
    excluded: frozenset[int] = (
        frozenset() if kinds is None else frozenset(KIND_NAMES) - {FULL, *kinds}
    )
    found = _candidates(base, target, header, kinds=None, excluded=excluded, ops=(ops, book),
                        known=known)  # fmt: skip
    return min(found, key=len)


def encode_delta(old: Value | Encoded, new: Value | Encoded, kind: int) -> bytes:
    """The delta of one given ``kind`` (tests, diagnostics), however large.

    :func:`make_delta` picks the smallest kind; this lets a test prove that
    :func:`apply_delta` accepts every kind it might pick.  ``EMPTY`` needs
    equal sides.
    """
    if kind not in KIND_NAMES:
        raise UsageError(f"unknown delta kind {kind}; kinds are {sorted(KIND_NAMES)}")
    base, target = _side(old), _side(new)
    header = _header(EMPTY, base.etag, target.etag)
    if kind == EMPTY:
        if base.cbor != target.cbor:
            raise UsageError("an empty delta needs equal base and target")
        return header
    found = _candidates(base, target, header, kinds={kind})
    if not found:
        raise UsageError(
            f"zstd did not write one compressed block for this pair: no {KIND_NAMES[kind]} "
            f"delta (kind {kind + 3} carries the frame)"
        )
    return min(found, key=len)


def _candidates(
    base: _Side,
    target: _Side,
    header: bytes,
    *,
    kinds: Collection[int] | None,
    excluded: Collection[int] = frozenset(),
    ops: tuple[list[structural.Op], KeyBook] | None = None,
    known: _Known | None = None,
) -> list[bytes]:
    """Deltas of the wanted ``kinds`` (all when None: then zstd only when
    worthwhile), none of the ``excluded`` ones (a reader's limits: they do
    not make the rest forced).

    ``ops`` are the diff's operations and key book when the caller has them.
    """

    def wanted(*which: int) -> bool:
        return any((kinds is None or kind in kinds) and kind not in excluded for kind in which)

    candidates: list[bytes] = []
    if wanted(FULL):
        candidates.append(with_kind(header, FULL) + target.cbor)
    if ops is None:
        book = KeyBook(base.value)
        operations = structural.diff(
            base.value, target.value, weigh=lambda op: len(encode_ops([op], book))
        )
    else:
        operations, book = ops
    body = encode_ops(operations, book) if wanted(*_OPS_KINDS) else b""
    if wanted(OPS):
        candidates.append(with_kind(header, OPS) + body)
    # A compressed body costs a few bytes of framing or tables, and loading
    # the base as its dictionary costs time in proportion to the base: try
    # compression only when the operations are big enough for it to pay.
    if len(body) <= _COMPRESS_WORTHWHILE and kinds is None:
        return candidates
    zstd_worthwhile = kinds is not None or len(body) > _ZSTD_WORTHWHILE
    compressors = (
        [
            _compressor(base.cbor, len(target.cbor), known, level=level)
            for level in _levels(len(base.cbor) + len(target.cbor))
        ]
        if zstd_worthwhile
        else []
    )
    texts: list[tuple[bytes, int, int]] = []
    ops_texts = (
        [
            body,
            encode_ops(operations, book, memory=False),
            encode_ops(operations, book, compact=False, memory=False),
        ]
        if wanted(OPS_ZSTD, OPS_ZSTD_FRAME, OPS_DEFLATE)
        else []
    )
    if wanted(OPS_DEFLATE):
        candidates += [with_kind(header, OPS_DEFLATE) + deflated
                       for deflated in _deflate(ops_texts, base.cbor)]  # fmt: skip
    if wanted(OPS_ZSTD, OPS_ZSTD_FRAME):
        # On a large base, each zstd call copies the digested dictionary's
        # match tables (a MiB or so at level 6) into its context: the calls
        # cost more than their output, so only the operations' plain
        # variant (the one that matches the base's bytes) is tried there.
        large = len(base.cbor) + len(target.cbor) > _ZSTD_SMALL_INPUT and kinds is None
        texts += [
            (text, OPS_ZSTD, OPS_ZSTD_FRAME) for text in (ops_texts[2:] if large else ops_texts)
        ]
    if wanted(FULL_ZSTD, FULL_ZSTD_FRAME):
        texts.append((target.cbor, FULL_ZSTD, FULL_ZSTD_FRAME))
    for text, block_kind, frame_kind in texts:
        for compressor in compressors:
            frame = compressor.compress(text)
            block = _strip(frame)
            if block is not None and wanted(block_kind):
                candidates.append(with_kind(header, block_kind) + block)
            if (block is None and kinds is None) or wanted(frame_kind):
                candidates.append(with_kind(header, frame_kind) + frame)
    return candidates


def _levels(size: int) -> tuple[int, ...]:
    """The zstd levels tried for a base and target of ``size`` bytes together.

    For a small pair, level 2 as well as 19: on a block of tens of bytes,
    level 19's optimal parser sometimes spends more on match and literal
    codes than the fast parser of level 2 (on the shared corpus, 171 of
    1,247 pairs come out 1-6 bytes smaller at level 2).  Every level writes the same frame
    format, so the reader does not care which one won.
    """
    if size <= _ZSTD_SMALL_INPUT:
        return (_ZSTD_LEVEL_SMALL, _ZSTD_LEVEL_FAST)
    return (_ZSTD_LEVEL_LARGE,)


_Table: TypeAlias = "array[int]"
"""A table with a row per node of a value, by preorder number.

An :class:`array.array` rather than a list: a config's tables have a row
per node (thousands), and a chain makes a pair for every result.  The
collector does not track arrays; it walks every item of every young list
at each collection, and with a few dozen such lists young at once that
walk cost 1-5 ms, in whichever apply happened to trigger it.
"""

_TYPECODE: Final = "q"

_Learnt: TypeAlias = tuple[tuple[_Table, _Table] | None, dict[str, int] | None, list[str] | None]
"""A value's size table and node lengths, and its key counts (each None if unknown)."""


class _Side(NamedTuple):
    """One side of a delta: a model value with its canonical encoding and ETag.

    ``learnt``, for a result spliced from a base with known tables: what
    derives the result's tables and key counts from the base's (see
    :func:`_remember`), called only if the result is met as a base.
    """

    value: Value
    cbor: bytes
    etag: ETag
    learnt: Callable[[], _Learnt] | None = None


def _side(config: Value | Encoded) -> _Side:
    if isinstance(config, Encoded):
        return _Side(config.tree, config.cbor, config.etag)
    blob = encode(config)
    return _Side(config, blob, etag_of_bytes(blob))


def _checked(value: Value) -> Value:
    try:
        return check_model(value)
    except ModelError as error:
        raise EncodeError(error.reason, path=error.path) from None


def _check_payloads(ops: Sequence[structural.Op]) -> None:
    """The model check of what a target adds to its base: the operations' keys and values."""
    for op in ops:
        match op:
            case structural.Set(value=value):
                _checked(value)
            case structural.Add(key=key, value=value):
                _checked({key: value})
            case structural.Rename(key=key):
                _checked({key: None})
            case structural.Copy(key=key, ops=nested):
                _checked({key: None})
                _check_payloads(nested)
            case structural.Splice(middle=middle):
                _checked(middle)
            case structural.TextEdit(runs=text_runs):
                _checked([run[2] for run in text_runs])
            case structural.ListEdit(runs=runs):
                _checked([item for run in runs for item in run[2]])
            case structural.Delete():
                pass


def _spliced_pair(
    base: Value, target: Value, diffed: structural.Diffed, known: _Known
) -> tuple[_Side, _Side]:
    """Base and target with their encodings, the target's spliced from the base's.

    A base met before has its bytes: the target's parts are sliced out of
    them.  Otherwise the base is encoded once, in parts split where the
    diff looked, and the target reuses those parts.
    """
    parts: dict[int, bytes] = {}
    visited = {id(node) for node in diffed.base_visited}
    if known.cbor is None:
        known.keep(encode_reusing(base, visited, parts))
    elif parts_from_bytes(base, known.cbor, visited, parts, tables=known.tables()) is None:
        parts.clear()  # pragma: no cover - the kept bytes are the base's canonical encoding
    blob = encode_reusing(target, {id(node) for node in diffed.target_visited}, parts)
    return known.side(base), _Side(target, blob, etag_of_bytes(blob))


def _spliced(base: _Side, applied: structural.Applied, known: _Known) -> _Side:
    """The result with its encoding, spliced from the base's bytes."""
    parts: dict[int, bytes] = {}
    result = applied.result
    tail: tuple[int, int, bytes] | None = None
    # The base's bytes are at hand: slice the untouched children out of them
    # instead of encoding them again, and take the root's entries after the
    # last change as one run of bytes.
    count = _shared_tail(base.value, result)
    rebuilt = {id(node) for node in applied.rebuilt}
    run = parts_from_bytes(
        base.value, base.cbor, rebuilt, parts, root_tail=count, tables=known.tables()
    )
    if run is None:
        parts.clear()  # not canonical after all: encode instead of slicing
    elif count:
        tail = (id(result), count, run)
    built = {id(node) for node in applied.built}
    blob = encode_reusing(result, built, parts, tail)
    base_tables, base_counts, base_keys = known.tables(), known.key_counts, known.keys
    if run is None or base_tables is None:
        return _Side(result, blob, etag_of_bytes(blob))  # nothing to derive tables from

    def learnt() -> _Learnt:
        tables = _result_tables(
            (result, blob), base_tables, applied, built=built, parts=parts, tail=tail
        )
        counts, keys = base_counts, base_keys
        if counts is not None and not applied.same_keys:
            change = structural.key_count_change(applied)
            if change is None:
                after, changed = structural.key_counts(result), None
            else:  # the keys placed again are the few whose counts moved
                after = structural.counts_changed(counts, change)
                changed = [key for key, step in change.items() if step]
            if keys is not None:
                keys = structural.keys_by_count_after(keys, counts, after, changed)
            counts = after
        return tables, counts, keys

    return _Side(result, blob, etag_of_bytes(blob), learnt)


def _learnt_by_applying(
    base: _Side, ops: Sequence[structural.Op], known: _Known, cbor: bytes
) -> Callable[[], _Learnt] | None:
    """What derives the tables of a made target, the next link of a gateway's
    chain, from those of its base (``known``), if the base has them.

    :func:`make_delta` diffs and never applies, so nothing it made tells the
    target's tables; applying ``ops`` to the base (work in proportion to the
    change, as on a device) does, as :func:`_spliced` derives a result's.
    Run only if the target is met as a base, and only trusted if the
    applied result's bytes are the target's (``cbor``): a caller may have
    changed the base tree in place since.  Without it, each link's make
    sized the subtrees it passed and counted every key of the tree.
    """
    if known.tables() is None:
        return None

    def learnt() -> _Learnt:
        try:
            applied = structural.apply_traced(base.value, ops, sizes=known.sizes)
        except DeltaError:  # pragma: no cover - the base was changed in place since
            return None, None, None
        side = _spliced(base, applied, known)
        if side.cbor != cbor or side.learnt is None:
            return None, None, None
        return side.learnt()

    return learnt


def _result_tables(
    encoded: tuple[Value, bytes],
    base_tables: tuple[_Table, _Table],
    applied: structural.Applied,
    *,
    built: set[int],
    parts: dict[int, bytes],
    tail: tuple[int, int, bytes] | None,
) -> tuple[_Table, _Table] | None:
    """The result's size table and node lengths, from the base's (None if they do not fit).

    ``encoded``: the result and its bytes; ``built``: ids of
    ``applied.built``; ``parts`` and ``tail`` as :func:`encode_reusing`
    used them.  The result is the base with the ``built`` containers in
    place of the ones on the way to the operations: an unchanged base
    subtree keeps its rows of both tables.  Only the containers built and
    the values the operations brought are walked, so the next apply to this
    result (a device applies each delta to the result of the last) finds
    its tables without walking the whole tree.
    """
    result, blob = encoded
    walk = _TableWalk(base_tables, applied.kept, built, parts, tail)
    try:
        walk.visit(result)
    except (KeyError, IndexError, DecodeError):  # pragma: no cover - defensive
        return None
    sizes, lengths = walk.sizes, walk.lengths
    if len(sizes) != len(lengths) or lengths[0] != len(blob):  # pragma: no cover - defensive
        return None
    return sizes, lengths


class _TableWalk:
    """:func:`_result_tables`'s recursion.  A method, not a nested function:
    a closure that calls itself holds itself through its cell, a cycle that
    only the collector frees, with the tables it holds."""

    __slots__ = ("base_lengths", "base_sizes", "built", "kept", "lengths", "parts", "sizes",
                 "tail")  # fmt: skip

    def __init__(
        self,
        base_tables: tuple[_Table, _Table],
        kept: Mapping[int, int],
        built: set[int],
        parts: dict[int, bytes],
        tail: tuple[int, int, bytes] | None,
    ) -> None:
        self.base_sizes, self.base_lengths = base_tables
        self.kept, self.built, self.parts, self.tail = kept, built, parts, tail
        self.sizes: _Table = array(_TYPECODE)
        self.lengths: _Table = array(_TYPECODE)

    def visit(self, node: Value) -> None:
        """Append the rows of ``node`` and its subtree."""
        sizes, lengths, base_sizes, base_lengths = (
            self.sizes, self.lengths, self.base_sizes, self.base_lengths
        )  # fmt: skip
        kept, built, tail = self.kept, self.built, self.tail
        key = id(node)
        if key not in built:
            index = kept.get(key)
            if index is None:  # a value an operation brought: its canonical bytes
                new_sizes, new_lengths = node_tables(self.parts[key])
                sizes.extend(new_sizes)
                lengths.extend(new_lengths)
            else:
                end = index + base_sizes[index]
                sizes.extend(base_sizes[index:end])
                lengths.extend(base_lengths[index:end])
            return
        at = len(sizes)
        sizes.append(0)
        lengths.append(len(self.parts[key]))  # encode_reusing assembled it there
        children: list[Value]
        count = 0
        if type(node) is dict:
            entries = cast(dict[str, Value], node)
            order = structural.canonical_keys(tuple(entries))
            count = tail[1] if tail is not None and tail[0] == key else 0
            children = [entries[name] for name in order[: len(order) - count]]
            if count:  # the root's last entries: one run of the base's bytes
                children.append(entries[order[len(order) - count]])
        else:
            children = cast(list[Value], node)
        start = stop = -1  # a run of kept children, consecutive in the base
        for child in children:
            index = kept.get(id(child), -1) if id(child) not in built else -1
            if index >= 0 and index == stop:
                stop += base_sizes[index]
                continue
            if start >= 0:
                sizes.extend(base_sizes[start:stop])
                lengths.extend(base_lengths[start:stop])
                start = stop = -1
            if index >= 0:
                start, stop = index, index + base_sizes[index]
            else:
                self.visit(child)
        if start >= 0:
            if count:
                stop = len(base_sizes)  # through the tail's end: the base's last nodes
            sizes.extend(base_sizes[start:stop])
            lengths.extend(base_lengths[start:stop])
        sizes[at] = len(sizes) - at


# How many bases the cache below remembers.  An entry holds two encodings of
# the base (its key and its canonical bytes) and two tables about its size.
_KNOWN_BASES: Final = 8


@dataclass(slots=True)
class _Known:
    """What is known about one base content: its canonical encoding and ETag,
    its :func:`~edgecfg.core.delta.size_table` and key table.

    A gateway makes many deltas from one version and a device applies
    several to one config, so these are cached, keyed by content and exact
    types (see :func:`~edgecfg.wire.cbor.content_key`), never by object
    identity: a caller may change a tree between calls, and then it is
    another key.  The tables are built the second time a base is met: a
    base met once does not pay for a walk it would not repeat; a result of
    an apply or a make gets its bytes and ETag when it is made, and its
    tables derived from its base's (see :func:`_remember`).  ``checked``:
    :func:`make_delta` checked this content against the model (a
    ``bytearray`` leaf in place of an equal ``bytes`` leaf has the same key,
    and the same canonical encoding, so it is taken as that ``bytes``).
    """

    cbor: bytes | None = None
    etag: ETag | None = None
    sizes: _Table | None = None
    lengths: _Table | None = None
    keys: list[str] | None = None
    key_counts: dict[str, int] | None = None
    learnt: Callable[[], _Learnt] | None = None
    met: int = 0
    checked: bool = False
    dictionaries: dict[tuple[int, ...], zstandard.ZstdCompressionDict] = field(
        default_factory=lambda: {}
    )

    @staticmethod
    def keyed(base: Value | Encoded) -> tuple[_Known, ContentKey | None]:
        """The cache entry for ``base`` (a fresh, uncached one if it has no content key),
        and the plain base's content key with its parts (see :func:`_remember`).

        An :class:`Encoded` base is keyed by its canonical bytes, a plain one
        by its :func:`~edgecfg.wire.cbor.content_key`: the two never meet,
        since an encoded map starts with a byte from 0xA0 and a marshal
        serialisation (format 2) with an ASCII type code.
        """
        content: ContentKey | None = None
        if isinstance(base, Encoded):
            known = _known(base.cbor)
            known.cbor, known.etag = base.cbor, base.etag
        else:
            content = _content_of(base)
            known = _known(content.key) if content is not None else _Known()
        known.met += 1
        if known.learnt is not None:
            tables, counts, keys = known.learnt()
            known.learnt = None
            if known.sizes is None and tables is not None:
                known.sizes, known.lengths = tables
            if known.key_counts is None:
                known.key_counts = counts
            if known.keys is None:
                known.keys = keys
        return known, content

    def side(self, value: Value) -> _Side:
        """``value``, this entry's base, with its canonical encoding (encoded if need be)."""
        if self.cbor is None or self.etag is None:
            self.keep(encode_unchecked(value))
        return _Side(value, cast(bytes, self.cbor), cast(ETag, self.etag))

    def keep(self, cbor: bytes) -> None:
        """Remember the base's canonical encoding (and its ETag)."""
        self.cbor, self.etag = cbor, etag_of_bytes(cbor)

    def learn(self, value: Value, book: KeyBook) -> None:
        """Keep the key table if ``book`` built it; the size table from the second meeting on."""
        if self.keys is None:
            self.keys = book.built
        self.build_tables(value)

    def build_tables(self, value: Value, *, now: bool = False) -> None:
        """The size table, node lengths and key counts: from the second meeting on, or ``now``."""
        if self.sizes is None and (now or self.met > 1):
            # One pass over the canonical bytes gives both tables (their
            # order is the canonical order the size table follows).
            sizes, lengths = node_tables(self.side(value).cbor)
            self.sizes, self.lengths = array(_TYPECODE, sizes), array(_TYPECODE, lengths)
            self.key_counts = structural.key_counts(value)

    def tables(self) -> tuple[_Table, _Table] | None:
        """The size table and :func:`~edgecfg.wire.cbor.node_lengths`, once both are known."""
        return (
            (self.sizes, self.lengths)
            if self.sizes is not None and self.lengths is not None
            else None
        )


def _meet(content: bytes) -> _Known:
    return _Known()


def _known(content: bytes) -> _Known:
    """The entry for a base of this content in the current role's cache."""
    return _CACHES[-1].known(content)


# A base met at most this often is a link of a chain (the result of the last
# call, met once, or twice when a call is repeated): its result will be the
# next link, so it is remembered.  A base met more often is a hub (a
# gateway's current version, deltas made to many devices' versions): its
# results are rarely met again, and remembering one costs a content key
# (a marshal pass, a third of an apply).
_CHAIN_MEETINGS: Final = 2


def _remember(
    side: _Side,
    base: ContentKey | None,
    *,
    checked: bool = False,
    encoded: bool = False,
    whole: bool = False,
) -> None:
    """Enter what a delta call learnt about a plain result into the cache of bases.

    A device applies each delta to the result of the one before, and a
    gateway may make each delta from the target of the one before: that
    value is the next base (the callers pass only results of bases met at
    most :data:`_CHAIN_MEETINGS` times).  Its canonical bytes and ETag were spliced and hashed
    already, so the next call slices the base's untouched parts out of them
    instead of encoding the whole tree once more.  Keyed by content like
    every entry: a caller who changes the result in place meets another
    base.  ``checked``: the value is known to be in the model (a target
    :func:`make_delta` checked: a checked base plus checked payloads).
    ``encoded``: the result goes back as an :class:`Encoded` (the agent's
    way), keyed by its canonical bytes as :meth:`_Known.keyed` keys one.
    ``base``: the content key of the call's plain base, made in this call;
    the result's key is spliced from it (the result keeps the base's
    untouched sections as the same objects), not serialised whole.
    """
    content: bytes | None
    if encoded:
        content = side.cbor
    else:
        parts = (
            content_key_parts(side.value)
            if base is None
            else spliced_content_key_parts(side.value, base)
        )
        # The caller meets this result next: one marshal pass will tell
        # whether it still holds this content, and then these parts hold.
        _LAST[:] = [] if parts is None else [parts]
        content = None if parts is None else parts.key
    if content is None:  # pragma: no cover - results are model values, which marshal takes
        return
    known = _known(content)
    if known.cbor is None:
        known.cbor, known.etag = side.cbor, side.etag
    known.checked = known.checked or checked
    if known.sizes is None and side.learnt is not None:
        # Derived when met: most results of a gateway's deltas never are.
        # The derivation holds the result tree and parts of the base, so
        # only the latest result keeps one (a device applies to it next).
        for pending in _PENDING:
            pending.learnt = None
        _PENDING[:] = [known]
        known.learnt = side.learnt
    elif known.sizes is None:
        # A device's result (or a gateway's target) will be met as a base,
        # and there is nothing to derive its tables from: its next meeting
        # counts as a second one and builds them (results after it inherit
        # them), or, when the delta carried the whole target (``whole``:
        # this call decoded and encoded all of it anyway), this call does.
        known.met = max(known.met, 1)
        if whole and not checked:
            known.build_tables(side.value, now=True)


# The entry whose tables are still to be derived (see _remember): at most one.
_PENDING: Final[list[_Known]] = []

# The content key, with its root entries' parts, of the last plain result
# entered by _remember (at most one): the next call of a chain meets it.
_LAST: Final[list[ContentKey]] = []


def _content_of(base: Value) -> ContentKey | None:
    """:func:`~edgecfg.wire.cbor.content_key_parts` of a plain base, in one
    marshal pass when ``base`` is the last result entered (a chain's next link).

    Identity only picks the way: the base's whole content key is made and
    compared with the one entered, so a result changed in place since is
    told apart and serialised entry by entry like any base.
    """
    last = _LAST[0] if _LAST else None
    if last is not None and last.root is base:
        if content_key(base) == last.key:
            return last
        _LAST.clear()
    return content_key_parts(base)


class BaseCache:
    """One role's memory of the delta bases it met (see :func:`bases_of`)."""

    __slots__ = ("known", "last", "pending")

    def __init__(self) -> None:
        self.known = lru_cache(maxsize=_KNOWN_BASES)(_meet)
        self.pending: list[_Known] = []
        self.last: list[ContentKey] = []


@contextlib.contextmanager
def bases_of(cache: BaseCache) -> Generator[None]:
    """Within, delta calls meet bases in ``cache``, not the process's own.

    One process that plays two roles (a simulator's gateway and its
    devices) keeps their meetings apart, as two processes would: a device
    meeting a base its gateway made a delta from is its first meeting, and
    the tables of a second one are not built for it.  Not thread-safe, as
    the cache itself is not.
    """
    saved = (_PENDING[:], _LAST[:])
    _PENDING[:], _LAST[:] = cache.pending, cache.last
    _CACHES.append(cache)
    try:
        yield
    finally:
        _CACHES.pop()
        cache.pending, cache.last = _PENDING[:], _LAST[:]
        _PENDING[:], _LAST[:] = saved


_CACHES: Final[list[BaseCache]] = [BaseCache()]
"""The process's cache of bases, then those :func:`bases_of` put in front."""


def forget_bases() -> None:
    """Empty the cache of bases met before (benchmarks time a first meeting with it)."""
    _CACHES[-1].known.cache_clear()
    _PENDING.clear()
    _LAST.clear()


def _shared_tail(base: Value, result: Value) -> int:
    """How many last entries (canonical order) two root maps share: same keys, same objects."""
    if type(base) is not dict or type(result) is not dict or base is result:
        return 0
    old, new = cast(dict[str, Value], base), cast(dict[str, Value], result)
    old_order = structural.canonical_keys(tuple(old))
    new_order = structural.canonical_keys(tuple(new))
    count = 0
    for name, other in zip(reversed(old_order), reversed(new_order), strict=False):
        if name != other or old[name] is not new[name]:
            break
        count += 1
    return count


def apply_delta(
    old: Value | Encoded,
    delta: bytes,
    *,
    schema: Schema | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Value:
    """Apply ``delta`` to ``old``; the result is checked against the target.

    ``old`` may be any model value or an :class:`Encoded` configuration, and
    so may the result: a delta may turn a map into a list.  ``old`` is
    hashed as given, not validated against the model again (the checks
    compare canonical encodings; :func:`make_delta` validated the base).
    The work is one canonical encoding of a plain ``old`` (the base check
    needs its ETag), split where the operations apply so that the result's
    encoding is spliced from it; an :class:`Encoded` ``old`` is not encoded
    at all (its untouched subtrees are sliced out of its bytes).  Raises
    :class:`DeltaBaseMismatch` when ``old`` is not the delta's base,
    :class:`DeltaIntegrityError` when the result is not the target, and
    :class:`DeltaError` for a malformed delta or one that exceeds ``limits``.
    ``schema`` is accepted for symmetry with :func:`make_delta`.
    """
    del schema  # the format does not depend on it
    return _apply(old, delta, limits).value


def apply_delta_encoded(
    base: Encoded, delta: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS
) -> Encoded:
    """:func:`apply_delta` for an encoded configuration, returning the encoded result.

    :class:`Encoded` holds a device configuration, a map by construction of
    the fleet model; a delta whose checked target is not a map raises
    :class:`DeltaError` here (use :func:`apply_delta` for other values).
    """
    result = _apply(base, delta, limits)
    if not is_map(result.value):
        raise DeltaError(
            f"delta target is a {type(result.value).__name__}, not a configuration map"
        )
    return Encoded(result.value, result.cbor, result.etag)


def _apply(old: Value | Encoded, delta: bytes, limits: DecodeLimits) -> _Side:
    delta = bytes(delta)
    if len(delta) < HEADER_SIZE:
        raise DeltaError(
            f"delta of {len(delta)} bytes is shorter than its {HEADER_SIZE}-byte header"
        )
    version, kind = delta[0] >> 6, delta[0] >> 3 & 7
    if version != FORMAT_VERSION:
        raise DeltaError(f"delta format version {version}; this edgecfg reads {FORMAT_VERSION}")
    # every value of the 3-bit kind field names a kind (KIND_NAMES)
    body = delta[HEADER_SIZE:]
    # Hashed, not re-validated: the base check compares encodings, and the
    # caller's base is a model value.  A base met before is not encoded again.
    known, content = _Known.keyed(old)
    value = old.tree if isinstance(old, Encoded) else old
    if kind == OPS and known.cbor is None:
        base, result = _apply_first_meeting(value, delta, limits, known)
    else:
        base = known.side(value)
        _check_base(base, delta)
        result = _apply_to(base, kind, body, limits, known)
    if len(result.cbor) > limits.max_bytes:
        raise DeltaError(f"delta result of {len(result.cbor)} bytes exceeds {limits.max_bytes}")
    produced = result.etag[:TARGET_CHECK_SIZE]
    if produced != delta[1:HEADER_SIZE]:
        raise DeltaIntegrityError(expected=delta[1:HEADER_SIZE], actual=produced)
    if result.value is not value and known.met <= _CHAIN_MEETINGS:
        # A device applies the next delta to this result.
        _remember(result, content, encoded=isinstance(old, Encoded), whole=kind in _FULL_KINDS)
    return result


def _apply_first_meeting(
    value: Value, delta: bytes, limits: DecodeLimits, known: _Known
) -> tuple[_Side, _Side]:
    """Apply operations to a plain base met for the first time.

    The base is encoded once, split where the operations apply, and the
    result spliced from its parts: apply costs one encoding, not two.
    """
    book = KeyBook(value, known.keys, known.key_counts)
    try:
        ops = decode_ops(delta[HEADER_SIZE:], book, limits)
        applied = structural.apply_traced(value, ops, max_nodes=limits.max_bytes, sizes=known.sizes)
    except DeltaError:
        _check_base(known.side(value), delta)  # a wrong base is the likelier story
        raise
    parts: dict[int, bytes] = {}
    known.keep(encode_reusing(value, {id(node) for node in applied.rebuilt}, parts))
    base = known.side(value)
    _check_base(base, delta)
    known.learn(value, book)
    blob = encode_reusing(applied.result, {id(node) for node in applied.built}, parts)
    return base, _Side(applied.result, blob, etag_of_bytes(blob))


def _check_base(base: _Side, delta: bytes) -> None:
    expected, actual = delta[0] & 7, _base_check(base.etag)
    if actual != expected:
        raise DeltaBaseMismatch(expected=bytes([expected]), actual=bytes([actual]))


def _apply_to(base: _Side, kind: int, body: bytes, limits: DecodeLimits, known: _Known) -> _Side:
    if kind == EMPTY:
        if body:
            raise DeltaError(f"empty delta carries {len(body)} unexpected bytes")
        return base
    if kind == FULL:
        return _trusted(_decode_value(body, limits, HEADER_SIZE))
    if kind in _FULL_KINDS:
        raw = _decompress(kind, body, base.cbor, limits)
        return _trusted(_decode_value(raw, limits, None))
    if kind == OPS:
        raw = body
    elif kind == OPS_DEFLATE:
        raw = _inflate(body, base.cbor, limits)
    else:
        raw = _decompress(kind, body, base.cbor, limits)
    book = KeyBook(base.value, known.keys, known.key_counts)
    ops = decode_ops(raw, book, limits)
    known.build_tables(base.value)  # before applying: the result inherits them
    # Each node encodes to at least one byte: more cannot fit the size limit.
    # Every part was checked: the base when encoded, new values by the decoder.
    applied = structural.apply_traced(
        base.value, ops, max_nodes=limits.max_bytes, sizes=known.sizes
    )
    known.learn(base.value, book)
    return _spliced(base, applied, known)


def _trusted(value: Value) -> _Side:
    blob = encode_unchecked(value)
    return _Side(value, blob, etag_of_bytes(blob))


def delta_kind(delta: bytes) -> str:
    """The name of a delta's encoding kind (for reports and benchmarks)."""
    if len(delta) < HEADER_SIZE or delta[0] >> 6 != FORMAT_VERSION:
        raise DeltaError("not an edgecfg delta")
    return KIND_NAMES[delta[0] >> 3 & 7]


# ---------------------------------------------------------------- header


def _base_check(base: ETag) -> int:
    return base[0] >> (8 - BASE_CHECK_BITS)


def _header(kind: int, base: ETag, target: ETag) -> bytes:
    return with_kind(bytes([_base_check(base)]) + target[:TARGET_CHECK_SIZE], kind)


def with_kind(delta: bytes, kind: int) -> bytes:
    """``delta`` with its kind field set to ``kind`` (checks and body unchanged)."""
    return bytes([FORMAT_VERSION << 6 | kind << 3 | delta[0] & 7]) + delta[1:]


def _decode_value(data: bytes, limits: DecodeLimits, offset: int | None) -> Value:
    try:
        return decode(data, limits=limits)
    except DecodeError as error:
        raise DeltaError(f"corrupt delta: {_where(error, offset)}") from None


def _where(error: DecodeError, offset: int | None) -> str:
    if offset is None:
        return f"{error.reason} at offset {error.offset} of the decompressed body"
    return f"{error.reason} at byte offset {error.offset + offset}"


# ---------------------------------------------------------------- zstd


def _compressor(
    dictionary: bytes, largest_input: int, known: _Known | None = None, *, level: int
) -> zstandard.ZstdCompressor:
    """One compressor primed with ``dictionary`` for every candidate of a delta.

    zstd digests a dictionary into match tables before it compresses with
    it, which costs about as much as compressing the dictionary itself.  A
    base met before (``known``) keeps the dictionary digested (a CDict, which
    zstd lets compressors share, read-only): the output is byte for byte the
    same.
    """
    params = zstandard.ZstdCompressionParameters.from_level(  # pyright: ignore[reportUnknownMemberType]
        level,
        source_size=largest_input,
        dict_size=len(dictionary),
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=False,
        write_content_size=False,
        write_dict_id=False,
    )
    if known is None:
        digested = _dictionary(dictionary)
    else:
        key = (params.window_log, params.chain_log, params.hash_log, params.search_log,
               params.min_match, params.target_length, params.strategy)  # fmt: skip
        digested = known.dictionaries.get(key)
        if digested is None:
            digested = _dictionary(dictionary)
            digested.precompute_compress(compression_params=params)  # pyright: ignore[reportUnknownMemberType]
            if len(known.dictionaries) >= _DICTIONARIES_KEPT:
                known.dictionaries.clear()
            known.dictionaries[key] = digested
    return zstandard.ZstdCompressor(dict_data=digested, compression_params=params)


# Digested dictionaries kept per known base (a small base has two levels: see
# _levels): a large base's tables take up to a few MiB.
_DICTIONARIES_KEPT: Final = 4


def _dictionary(data: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _decompress(kind: int, body: bytes, dictionary: bytes, limits: DecodeLimits) -> bytes:
    """The content of a compressed body; at most ``limits.max_bytes`` out.

    A bare block (kinds 2 and 3) gets its frame back and decompresses to at
    most one block (128 KiB), all of its bytes used.  A whole frame (kinds 5
    and 6) may hold several blocks, and no bytes may follow it.
    """
    frame = _frame(kind, body)
    try:
        size = zstandard.get_frame_parameters(
            frame, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        ).content_size
    except zstandard.ZstdError as error:
        raise DeltaError(f"corrupt compressed delta body: {error}") from None
    # edgecfg writes no size, but a hostile frame may declare one: decompress()
    # would allocate it, so refuse one above the limit before that.
    if size != zstandard.CONTENTSIZE_UNKNOWN and size > limits.max_bytes:
        raise DeltaError(f"delta declares {size} bytes, more than {limits.max_bytes} bytes allowed")
    whole = frame is body
    bound = limits.max_bytes if whole else min(limits.max_bytes, _BLOCK_SIZE_MAX)
    decompressor = zstandard.ZstdDecompressor(
        dict_data=_dictionary(dictionary), format=zstandard.FORMAT_ZSTD1_MAGICLESS
    )
    try:
        # The frame declares no size: the bound sizes the output buffer, and
        # a frame that would exceed it fails here, before the bytes exist.
        out = decompressor.decompress(frame, max_output_size=bound)
        if whole:
            # decompress() ignores bytes after the frame; a strict reader does
            # not.  Safe to run again: the output is known to be within bounds.
            rest = decompressor.decompressobj()
            rest.decompress(frame)
            if not rest.eof or rest.unused_data:
                raise DeltaError(
                    f"compressed delta body has {len(rest.unused_data)} bytes after its frame"
                )
    except zstandard.ZstdError as error:
        raise DeltaError(
            f"corrupt compressed delta body, or one of more than {bound} bytes: {error}"
        ) from None
    return out


# The frame header of kinds 2 and 3: no content size, checksum or dictionary
# id, not single-segment (RFC 8878 §3.1.1.1.1), and a window descriptor of
# 2**23 bytes (exponent 13, §3.1.1.1.2), above every window the writer uses
# for the configurations the decode limits admit.
_FRAME_DESCRIPTOR: Final = 0x00
_WINDOW_DESCRIPTOR: Final = 13 << 3
_BLOCK_COMPRESSED: Final = 2
_BLOCK_SIZE_MAX: Final = 128 * 1024


def _strip(frame: bytes) -> bytes | None:
    """The content of ``frame``'s only block, if it is one last compressed block
    under our fixed frame header (else the frame must travel whole)."""
    if len(frame) < 5 or frame[0] != _FRAME_DESCRIPTOR or frame[1] > _WINDOW_DESCRIPTOR:
        return None
    header = int.from_bytes(frame[2:5], "little")  # RFC 8878 §3.1.1.2
    last, block_type, size = header & 1, header >> 1 & 3, header >> 3
    if not last or block_type != _BLOCK_COMPRESSED or len(frame) != 5 + size:
        return None
    return frame[5:]


def _frame(kind: int, body: bytes) -> bytes:
    """The zstd frame a body of ``kind`` stands for (see :func:`_strip`)."""
    if kind in (OPS_ZSTD_FRAME, FULL_ZSTD_FRAME):
        return body
    if len(body) > _BLOCK_SIZE_MAX:
        raise DeltaError(f"compressed block of {len(body)} bytes exceeds {_BLOCK_SIZE_MAX}")
    block_header = (len(body) << 3 | _BLOCK_COMPRESSED << 1 | 1).to_bytes(3, "little")
    return bytes([_FRAME_DESCRIPTOR, _WINDOW_DESCRIPTOR]) + block_header + body


# ---------------------------------------------------------------- deflate

# RFC 1951 §3.2.3: a back reference reaches at most 32 KiB back, so only the
# base's last 32 KiB can serve as the preset dictionary.
_DEFLATE_WINDOW: Final = 32 * 1024
_DEFLATE_WBITS: Final = -15  # raw deflate: no zlib header or Adler-32 trailer


def _deflate(texts: Sequence[bytes], base: bytes) -> list[bytes]:
    """Each of ``texts`` as raw deflate, primed with the end of the base's encoding.

    The dictionary is loaded once: each text goes through a copy of the
    primed compressor.
    """
    primed = zlib.compressobj(
        9, zlib.DEFLATED, _DEFLATE_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, base[-_DEFLATE_WINDOW:]
    )
    out: list[bytes] = []
    for text in texts:
        compressor = primed.copy()
        out.append(compressor.compress(text) + compressor.flush())
    return out


def _inflate(body: bytes, base: bytes, limits: DecodeLimits) -> bytes:
    """The content of an ``OPS_DEFLATE`` body: at most ``limits.max_bytes``, and
    the deflate stream must end with the body (no bytes after it, none missing)."""
    decompressor = zlib.decompressobj(_DEFLATE_WBITS, zdict=base[-_DEFLATE_WINDOW:])
    try:
        out = decompressor.decompress(body, limits.max_bytes)
    except zlib.error as error:
        raise DeltaError(f"corrupt deflate delta body: {error}") from None
    if decompressor.unconsumed_tail:
        raise DeltaError(f"deflate delta body inflates beyond {limits.max_bytes} bytes")
    if not decompressor.eof:
        raise DeltaError("deflate delta body ends inside its stream")
    if decompressor.unused_data:
        raise DeltaError(
            f"deflate delta body has {len(decompressor.unused_data)} bytes after its stream"
        )
    return out
