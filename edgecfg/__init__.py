"""edgecfg: configuration management for constrained edge devices over CoAP.

The stable public API (DESIGN §7)::

    blob = edgecfg.encode(tree)        # canonical CBOR bytes
    tree = edgecfg.decode(blob)        # strict; raises edgecfg.DecodeError
    tag = edgecfg.etag(tree)           # 8 bytes
    d = edgecfg.make_delta(old, new)   # wire delta bytes, bound to base and target
    new2 = edgecfg.apply_delta(old, d) # == new; raises edgecfg.DeltaBaseMismatch
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecfg.core.path import Path, format_path, parse_path
    from edgecfg.core.schema import KeySpec, Schema
    from edgecfg.core.schema_document import check_evolution, schema_from_document
    from edgecfg.core.tree import UNSET, Tree, UnsetType, Value, values_equal
    from edgecfg.errors import (
        DecodeError,
        DeltaBaseMismatch,
        DeltaError,
        DeltaIntegrityError,
        EdgecfgError,
        EncodeError,
        ModelError,
        PathError,
        PeerError,
        SchemaError,
        StoreError,
        UsageError,
        ValidationError,
        Violation,
    )
    from edgecfg.wire.cbor import DecodeLimits, Encoded, decode, decode_tree, encode, etag
    from edgecfg.wire.delta import apply_delta, apply_delta_encoded, make_delta

    __version__: str

# The names below are imported when first asked for (PEP 562): a device's
# agent imports ``edgecfg.agent...``, which runs this file first, and must not
# pay for the schema documents, the delta codec or importlib.metadata it may
# never use (issue 16: the agent in 30 MB of RSS).
_HOMES: dict[str, str] = {
    "Path": "edgecfg.core.path",
    "format_path": "edgecfg.core.path",
    "parse_path": "edgecfg.core.path",
    "KeySpec": "edgecfg.core.schema",
    "Schema": "edgecfg.core.schema",
    "check_evolution": "edgecfg.core.schema_document",
    "schema_from_document": "edgecfg.core.schema_document",
    "UNSET": "edgecfg.core.tree",
    "Tree": "edgecfg.core.tree",
    "UnsetType": "edgecfg.core.tree",
    "Value": "edgecfg.core.tree",
    "values_equal": "edgecfg.core.tree",
    "DecodeError": "edgecfg.errors",
    "DeltaBaseMismatch": "edgecfg.errors",
    "DeltaError": "edgecfg.errors",
    "DeltaIntegrityError": "edgecfg.errors",
    "EdgecfgError": "edgecfg.errors",
    "EncodeError": "edgecfg.errors",
    "ModelError": "edgecfg.errors",
    "PathError": "edgecfg.errors",
    "PeerError": "edgecfg.errors",
    "SchemaError": "edgecfg.errors",
    "StoreError": "edgecfg.errors",
    "UsageError": "edgecfg.errors",
    "ValidationError": "edgecfg.errors",
    "Violation": "edgecfg.errors",
    "DecodeLimits": "edgecfg.wire.cbor",
    "Encoded": "edgecfg.wire.cbor",
    "decode": "edgecfg.wire.cbor",
    "decode_tree": "edgecfg.wire.cbor",
    "encode": "edgecfg.wire.cbor",
    "etag": "edgecfg.wire.cbor",
    "apply_delta": "edgecfg.wire.delta",
    "apply_delta_encoded": "edgecfg.wire.delta",
    "make_delta": "edgecfg.wire.delta",
}
"""Each public name and the module that defines it."""


def __getattr__(name: str) -> object:
    """A public name, imported from its home module on first use."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("edgecfg")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            return "0.0.0"
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | {"__version__"})


__all__ = [
    "UNSET",
    "DecodeError",
    "DecodeLimits",
    "DeltaBaseMismatch",
    "DeltaError",
    "DeltaIntegrityError",
    "EdgecfgError",
    "EncodeError",
    "Encoded",
    "KeySpec",
    "ModelError",
    "Path",
    "PathError",
    "PeerError",
    "Schema",
    "SchemaError",
    "StoreError",
    "Tree",
    "UnsetType",
    "UsageError",
    "ValidationError",
    "Value",
    "Violation",
    "__version__",
    "apply_delta",
    "apply_delta_encoded",
    "check_evolution",
    "decode",
    "decode_tree",
    "encode",
    "etag",
    "format_path",
    "make_delta",
    "parse_path",
    "schema_from_document",
    "values_equal",
]
