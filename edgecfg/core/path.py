"""Configuration paths: ``("net", "uplink", "interval_s")`` <-> ``net.uplink.interval_s``.

The text form joins keys with ``.``; a key that contains ``.`` or ``\\`` escapes
them with a backslash (``a\\.b`` is the single key ``a.b``).  The empty text is
the root path ``()``.  Keys in the text form must not be empty: a tree may have
an empty key, but such a node is addressed by tuple, not by text.
"""

from __future__ import annotations

from edgecfg.errors import PathError

Path = tuple[str, ...]
ROOT: Path = ()

_SEP = "."
_ESC = "\\"


def parse_path(text: str) -> Path:
    """Parse the dotted text form into a path tuple.

    Raises :class:`PathError` for empty keys (``a..b``, ``.a``), a dangling
    escape, or an escape of anything but ``.`` and ``\\``.
    """
    if text == "":
        return ROOT
    keys: list[str] = []
    current: list[str] = []
    chars = iter(enumerate(text))
    for index, char in chars:
        if char == _ESC:
            nxt = next(chars, None)
            if nxt is None:
                raise PathError("dangling escape at the end", path=text)
            if nxt[1] not in (_SEP, _ESC):
                raise PathError(f"only '.' and '\\' may be escaped (offset {index})", path=text)
            current.append(nxt[1])
        elif char == _SEP:
            if not current:
                raise PathError(f"empty key before offset {index}", path=text)
            keys.append("".join(current))
            current = []
        else:
            current.append(char)
    if not current:
        raise PathError("empty key at the end", path=text)
    keys.append("".join(current))
    return tuple(keys)


def format_path(path: Path) -> str:
    """Format a path tuple in the dotted text form (inverse of :func:`parse_path`)."""
    parts: list[str] = []
    for key in path:
        if key == "":
            raise PathError("an empty key has no text form", path=repr(path))
        parts.append(key.replace(_ESC, _ESC + _ESC).replace(_SEP, _ESC + _SEP))
    return _SEP.join(parts)


def is_prefix(prefix: Path, path: Path) -> bool:
    """True when ``prefix`` addresses ``path`` or one of its ancestors."""
    return path[: len(prefix)] == prefix
