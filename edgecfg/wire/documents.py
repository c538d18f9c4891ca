"""Text and binary document formats: JSON, TOML, YAML, CBOR and CBOR diagnostic notation.

Configurations travel as canonical CBOR; people write them (and schemas) as
JSON, TOML or YAML and read raw CBOR from ``coap-client`` as diagnostic
notation (RFC 8949 §8).  This module is the one owner of the parsers for
those formats; every error becomes an :class:`~edgecfg.errors.EdgecfgError`
naming the format and where in the input the problem is.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Final, Literal, cast

from edgecfg.core.schema import Schema
from edgecfg.core.tree import Value, check_model
from edgecfg.errors import ModelError, PeerError, UsageError
from edgecfg.wire.cbor import DEFAULT_LIMITS, DecodeLimits, decode, encode

TextFormat = Literal["json", "toml", "yaml"]
ConfigFormat = Literal["json", "cbor", "diag"]
CONFIG_FORMATS: Final[tuple[ConfigFormat, ...]] = ("json", "cbor", "diag")

_SUFFIXES: Final[dict[str, TextFormat | ConfigFormat]] = {
    ".json": "json",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".cbor": "cbor",
    ".diag": "diag",
    ".edn": "diag",
}


class DocumentError(PeerError, ValueError):
    """A document cannot be parsed in the format it claims to be."""


def guess_format(name: str, default: str = "json") -> str:
    """The format implied by a file name's suffix (``default`` when unknown)."""
    return _SUFFIXES.get(PurePath(name).suffix.lower(), default)


def parse_text_document(data: bytes, fmt: TextFormat, *, source: str = "<input>") -> object:
    """Parse a JSON, TOML or YAML document into plain Python values."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DocumentError(f"{source}: not UTF-8 text (byte {error.start})") from None
    # The parsers of TOML and YAML and the diagnostic notation are imported in
    # the branch that needs them: a device's agent imports this module to
    # write its config and must not load yaml (issue 16: the agent in 30 MB).
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise DocumentError(
                f"{source}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
    if fmt == "toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise DocumentError(f"{source}: invalid TOML: {error}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DocumentError(f"{source}: invalid YAML: {_one_line(str(error))}") from None


def read_config(
    data: bytes,
    fmt: ConfigFormat | TextFormat,
    *,
    source: str = "<input>",
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Value:
    """Read a configuration value from bytes in ``fmt`` (checked against the model)."""
    if fmt == "cbor":
        return decode(data, limits=limits)
    if fmt == "diag":
        import cbor_diag

        try:
            text = data.decode("utf-8")
            raw = cbor_diag.diag2cbor(text)
        except (UnicodeDecodeError, ValueError) as error:
            raise DocumentError(f"{source}: invalid CBOR diagnostic notation: {error}") from None
        return decode(raw, limits=limits)
    value = parse_text_document(data, fmt, source=source)
    try:
        return check_model(value)
    except ModelError as error:
        raise DocumentError(f"{source}: {error}") from None


def write_config(value: Value, fmt: ConfigFormat) -> bytes:
    """Serialise a configuration value: canonical CBOR, diagnostic notation or JSON.

    JSON cannot carry bytes or non-finite floats; those raise :class:`UsageError`
    naming the path, pointing at ``cbor`` or ``diag`` instead.
    """
    if fmt == "cbor":
        return encode(value)
    if fmt == "diag":
        import cbor_diag

        return (cbor_diag.cbor2diag(encode(value)) + "\n").encode()
    _check_json(value, "")
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def _check_json(value: Value, where: str) -> None:
    if isinstance(value, bytes):
        raise UsageError(
            f"bytes at {where or '<root>'} cannot be written as JSON; use cbor or diag"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{value} at {where or '<root>'} is not valid JSON; use cbor or diag")
    if isinstance(value, dict):
        for key, child in value.items():
            _check_json(child, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, child in enumerate(cast(list[Value], value)):
            _check_json(child, f"{where}[{index}]")


def diagnostic(data: bytes) -> str:
    """Diagnostic notation of arbitrary CBOR bytes (for showing what arrived)."""
    import cbor_diag

    try:
        return cbor_diag.cbor2diag(data)
    except ValueError as error:
        raise DocumentError(f"not CBOR: {error}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_schema(data: bytes, fmt: TextFormat, *, source: str = "<input>") -> Schema:
    """Parse a schema document (JSON, TOML or YAML) and build the :class:`Schema`."""
    document = parse_text_document(data, fmt, source=source)
    if not isinstance(document, dict):
        raise DocumentError(f"{source}: a schema document must be a map at the top level")
    from edgecfg.core.schema_document import schema_from_document

    return schema_from_document(cast(dict[str, object], document))
