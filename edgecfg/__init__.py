"""edgecfg: configuration management for constrained edge devices over CoAP.

The stable public API (DESIGN §7)::

    blob = edgecfg.encode(tree)        # canonical CBOR bytes
    tree = edgecfg.decode(blob)        # strict; raises edgecfg.DecodeError
    tag = edgecfg.etag(tree)           # 8 bytes
    d = edgecfg.make_delta(old, new)   # wire delta bytes, bound to base and target
    new2 = edgecfg.apply_delta(old, d) # == new; raises edgecfg.DeltaBaseMismatch
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("edgecfg")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

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
