"""Reading and writing the files named on the command line.

``-`` means standard input or output.  Every failure becomes a
:class:`CommandError` with one line naming the file and the reason.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edgecfg.core.rules import RuleSet
from edgecfg.core.schema import Schema
from edgecfg.core.tree import UnsetType, Value
from edgecfg.errors import CommandError, EdgecfgError, UsageError
from edgecfg.wire.adaptation import read_rules
from edgecfg.wire.documents import (
    ConfigFormat,
    TextFormat,
    guess_format,
    read_config,
    read_schema,
    write_config,
)

_D = TypeVar("_D")


def read_bytes(name: str) -> bytes:
    """The contents of file ``name`` (``-``: standard input)."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{name}: is a directory, expected a file") from None
    except OSError as error:
        raise CommandError(f"{name}: cannot read: {error.strerror}") from None


def write_bytes(name: str, data: bytes) -> None:
    """Write ``data`` to ``name`` (``-``: standard output)."""
    if name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(name).write_bytes(data)
    except OSError as error:
        raise CommandError(f"{name}: cannot write: {error.strerror}") from None


def config_format(name: str, given: str | None) -> ConfigFormat | TextFormat:
    """The format of a config file: the explicit one, else from the suffix, else JSON."""
    fmt = given or guess_format(name)
    if fmt not in ("json", "cbor", "diag", "toml", "yaml"):
        raise UsageError(f"{name}: unknown format {fmt!r}; use json, cbor, diag, toml or yaml")
    return fmt  # type: ignore[return-value]


def load_config(name: str, fmt: str | None = None) -> Value:
    """Read a configuration from a file in JSON, CBOR, diag, TOML or YAML."""
    data = read_bytes(name)
    try:
        return read_config(data, config_format(name, fmt), source=name)
    except EdgecfgError as error:
        text = str(error)
        raise CommandError(text if text.startswith(name) else f"{name}: {text}") from None


def load_schema(name: str) -> Schema:
    """Read a schema file (JSON, TOML or YAML by suffix; JSON otherwise)."""
    return _load_document(name, read_schema)


def load_rules(name: str) -> RuleSet:
    """Read a rules document (JSON, TOML or YAML by suffix; JSON otherwise)."""
    return _load_document(name, read_rules)


def _load_document(name: str, reader: Callable[..., _D]) -> _D:
    fmt = guess_format(name)
    if fmt not in ("json", "toml", "yaml"):
        fmt = "json"
    try:
        return reader(read_bytes(name), fmt, source=name)
    except CommandError:
        raise
    except EdgecfgError as error:
        text = str(error)
        raise CommandError(text if text.startswith(name) else f"{name}: {text}") from None


def print_json(document: object) -> None:
    """``document`` as indented JSON on stdout (bytes as ``{"bytes": hex}``)."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=jsonable))


def jsonable(value: object) -> object:
    """What JSON shows for a value it has no form of (``json.dumps(default=)``)."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, UnsetType):
        return None
    return repr(value)


def dump_config(value: Value, name: str, fmt: ConfigFormat) -> None:
    """Write a configuration to ``name`` in ``fmt``."""
    write_bytes(name, write_config(value, fmt))
