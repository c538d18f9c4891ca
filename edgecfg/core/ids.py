"""Identifier types shared across layers.

They are ``NewType`` wrappers: free at run time, distinct for the type checker.
"""

from __future__ import annotations

import re
from typing import NewType

from edgecfg.errors import UsageError

ETag = NewType("ETag", bytes)
"""First 8 bytes of SHA-256 over a canonical CBOR encoding (DESIGN §3)."""

DeviceId = NewType("DeviceId", str)
"""A device's registry id, e.g. ``dev-0042``."""

LayerId = NewType("LayerId", str)
"""A layer's id: ``global``, ``region/eu/eu-west`` or ``device/dev-0042``."""

ETAG_SIZE = 8

DEVICE_ID_RULE = "1-64 characters of A-Z a-z 0-9 _ . : @ + -, starting with a letter or digit"
"""The device-id alphabet: each id is one CoAP URI path segment (``/cfg/{dev}``)
that needs no percent-encoding (RFC 3986 pchar), is never a dot-segment, and is
safe as a file and credential name."""

_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}")


def check_device_id(text: str) -> DeviceId:
    """``text`` as a :data:`DeviceId`; :class:`UsageError` naming the rule otherwise."""
    if not _DEVICE_ID.fullmatch(text):
        raise UsageError(f"device id {text!r}: must be {DEVICE_ID_RULE}")
    return DeviceId(text)
