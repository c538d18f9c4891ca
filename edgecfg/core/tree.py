"""The configuration tree (DESIGN §3) and pure operations on it.

A configuration is a map with text keys whose values are maps again or
leaves: int, float, bool, text, bytes, null, and arrays.  Arrays are leaf
values (paths do not descend into them); they may hold any model value.

Operations never mutate their input: they return new trees that share
unchanged subtrees with the old one.

**Equality** (:func:`values_equal`) is *encoding equality*: two values are
equal exactly when their canonical CBOR encodings are equal, so equal values
always have equal ETags.  Deliberately, therefore:

- ``1`` and ``1.0`` differ (CBOR int vs float), and ``True`` differs from ``1``;
- ``-0.0`` differs from ``0.0`` (``f98000`` vs ``f90000``);
- every NaN equals every NaN (canonical CBOR has one NaN, ``f97e00``).

Python's ``==`` gets all three wrong for configurations, so use this.

**UNSET** marks "no value here" and is distinct from ``None``, which is the
CBOR null a configuration may hold on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Final, TypeAlias, TypeGuard, cast

from edgecfg.core.path import Path, format_path
from edgecfg.errors import ModelError, PathError

Scalar: TypeAlias = int | float | bool | str | bytes | None
Value: TypeAlias = "int | float | bool | str | bytes | list[Value] | dict[str, Value] | None"
Tree: TypeAlias = dict[str, Value]

INT_MIN: Final = -(2**64)
INT_MAX: Final = 2**64 - 1


class UnsetType:
    """Type of :data:`UNSET`; there is exactly one instance."""

    __slots__ = ()
    _instance: UnsetType | None = None

    def __new__(cls) -> UnsetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"


UNSET: Final = UnsetType()


def is_map(value: object) -> TypeGuard[dict[str, Value]]:
    """True for a map node of the tree."""
    return isinstance(value, dict)


def _describe(path: Path) -> str:
    try:
        return format_path(path)
    except PathError:
        return repr(path)


def check_model(value: object, path: Path = ()) -> Value:
    """Return ``value`` if it is a model value, else raise :class:`ModelError`.

    Accepts exactly: dict with str keys, list, int in the CBOR range
    [-2**64, 2**64 - 1], float, bool, str, bytes, None.  Tuples, sets,
    subclasses of str/bytes other than the builtins, and big integers are
    rejected because they would not round-trip through the codec.
    """
    try:
        valid = _is_model(value)
    except RecursionError:
        raise ModelError("value nested too deeply", path=_describe(path)) from None
    if not valid:
        problem, where = _first_problem(value, path)
        raise ModelError(problem, path=_describe(where))
    return value  # type: ignore[return-value]


_SCALARS: Final = frozenset({float, bool, str, bytes, type(None)})


def _is_model(value: object) -> bool:
    # The hot path (every encode) tracks no paths; _first_problem finds the
    # place only once something is wrong.
    kind = type(value)
    if kind is dict:
        items = cast(dict[str, object], value)
        # One C-level pass over all keys: exact str type, then UTF-8 safety of
        # them all at once (ASCII keys, the usual case, need no encoding).
        if not all(type(key) is str for key in items):
            return False
        keys = "".join(items)
        if not (keys.isascii() or _is_text(keys)):
            return False
        return all(map(_is_model, items.values()))
    if kind is str:
        return _is_text(value)  # type: ignore[arg-type]
    if kind in _SCALARS:
        return True
    if kind is int:
        return INT_MIN <= value <= INT_MAX  # type: ignore[operator]
    if kind is list:
        return all(map(_is_model, cast(list[object], value)))
    return False


def _is_text(text: str) -> bool:
    """True unless ``text`` holds lone surrogates, which CBOR text (UTF-8) cannot carry."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_problem(value: object, path: Path) -> tuple[str, Path]:
    stack: list[tuple[object, Path]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if isinstance(item, dict) and kind is dict:
            for key, child in cast(dict[object, object], item).items():
                if not isinstance(key, str) or type(key) is not str:
                    return f"map key {key!r} is not text", where
                if not _is_text(key):
                    return f"map key {key!r} is not Unicode text (lone surrogate)", where
                stack.append((child, (*where, key)))
        elif isinstance(item, list) and kind is list:
            stack.extend((child, where) for child in cast(list[object], item))
        elif isinstance(item, str) and kind is str and not _is_text(item):
            return f"text {item!r} is not Unicode text (lone surrogate)", where
        elif kind is int and not INT_MIN <= item <= INT_MAX:  # type: ignore[operator]
            return f"integer {item} outside the CBOR range [-2**64, 2**64-1]", where
        elif kind not in _SCALARS and kind is not int:
            return f"{kind.__name__} is not a configuration value", where
    raise AssertionError("unreachable: _is_model rejected a valid value")  # pragma: no cover


def _float_equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def values_equal(a: Value | UnsetType, b: Value | UnsetType) -> bool:
    """Encoding equality of two values (see the module docstring)."""
    if a is b:  # shared subtrees (copy-on-write trees share what did not change)
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return _float_equal(a, b)  # type: ignore[arg-type]
    if isinstance(a, dict):
        other: dict[str, Value] = b  # type: ignore[assignment]
        if a.keys() != other.keys():
            return False
        return all(values_equal(a[key], other[key]) for key in a)
    if isinstance(a, list):
        items: list[Value] = b  # type: ignore[assignment]
        return len(a) == len(items) and all(
            values_equal(x, y) for x, y in zip(a, items, strict=True)
        )
    return a == b


def get(tree: Mapping[str, Value], path: Path) -> Value | UnsetType:
    """The node at ``path`` or :data:`UNSET` when nothing is there."""
    node: Value = tree  # type: ignore[assignment]
    for key in path:
        if not is_map(node) or key not in node:
            return UNSET
        node = node[key]
    return node


def set_value(tree: Tree, path: Path, value: Value, *, replace_leaves: bool = False) -> Tree:
    """A new tree with ``value`` at ``path``; missing maps on the way are created.

    Raises :class:`PathError` for the root path or when the way is blocked by
    a leaf (``a`` is ``3`` and you set ``a.b``), unless ``replace_leaves``, in
    which case the leaf gives way to a map (layer folding needs this).
    """
    if not path:
        raise PathError("cannot set the root; pass a new tree instead", path="")
    check_model(value, path)
    return _set(tree, path, 0, value, replace_leaves)


def _set(node: Tree, path: Path, depth: int, value: Value, replace_leaves: bool) -> Tree:
    key = path[depth]
    out = dict(node)
    if depth == len(path) - 1:
        out[key] = value
        return out
    child = node.get(key, UNSET)
    if child is UNSET or (replace_leaves and not is_map(child)):
        child = {}
    elif not is_map(child):
        raise PathError(
            f"{_describe(path[: depth + 1])} holds a leaf, not a map", path=_describe(path)
        )
    out[key] = _set(child, path, depth + 1, value, replace_leaves)
    return out


def put_checked_value(tree: Tree, path: Path, value: Value) -> Tree:
    """:func:`set_value` with ``replace_leaves`` for a value already checked
    against the model (layer folding sets thousands of them)."""
    return _set(tree, path, 0, value, True)


def delete(tree: Tree, path: Path, *, missing_ok: bool = False) -> Tree:
    """A new tree without the node at ``path``.

    Raises :class:`PathError` when nothing is there, unless ``missing_ok``.
    Maps left empty by the deletion are kept (an empty map is a value).
    """
    if not path:
        raise PathError("cannot delete the root", path="")
    if get(tree, path) is UNSET:
        if missing_ok:
            return tree
        raise PathError("nothing to delete", path=_describe(path))
    return _delete(tree, path, 0)


def _delete(node: Tree, path: Path, depth: int) -> Tree:
    out = dict(node)
    key = path[depth]
    if depth == len(path) - 1:
        del out[key]
    else:
        out[key] = _delete(node[key], path, depth + 1)  # type: ignore[arg-type]
    return out


def walk_leaves(tree: Mapping[str, Value], prefix: Path = ()) -> Iterator[tuple[Path, Value]]:
    """Yield ``(path, leaf)`` in canonical key order (sorted by encoded key).

    An empty map is yielded as a leaf so that :func:`unflatten` can restore it.
    """
    for key in sorted(tree, key=canonical_key_order):
        value = tree[key]
        path = (*prefix, key)
        if is_map(value) and value:
            yield from walk_leaves(value, path)
        else:
            yield path, value


def canonical_key_order(key: str) -> tuple[int, bytes]:
    """Sort key that orders text map keys as RFC 8949 §4.2.1 does.

    For text keys, bytewise order of the encoded keys equals ordering by
    UTF-8 length first, then by the UTF-8 bytes.
    """
    raw = key.encode("utf-8")
    return (len(raw), raw)


def flatten(tree: Mapping[str, Value]) -> dict[Path, Value]:
    """Map every leaf path to its leaf (see :func:`walk_leaves`)."""
    return dict(walk_leaves(tree))


def unflatten(flat: Mapping[Path, Value]) -> Tree:
    """Inverse of :func:`flatten`.

    Raises :class:`PathError` when one path is a proper prefix of another
    with a non-map value (``a`` = 1 and ``a.b`` = 2), or for the root path.
    """
    root: Tree = {}
    for path in sorted(flat, key=len):
        if not path:
            raise PathError("the root cannot be a leaf", path="")
        node = root
        for depth, key in enumerate(path[:-1]):
            child = node.setdefault(key, {})
            if not is_map(child) or path[: depth + 1] in flat:
                raise PathError(
                    f"{_describe(path[: depth + 1])} is both a leaf and a map",
                    path=_describe(path),
                )
            node = child
        node[path[-1]] = flat[path]
    return root
