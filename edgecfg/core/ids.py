"""Identifier types shared across layers.

They are ``NewType`` wrappers: free at run time, distinct for the type checker.
"""

from __future__ import annotations

from typing import NewType

ETag = NewType("ETag", bytes)
"""First 8 bytes of SHA-256 over a canonical CBOR encoding (DESIGN §3)."""

DeviceId = NewType("DeviceId", str)
"""A device's registry id, e.g. ``dev-0042``."""

LayerId = NewType("LayerId", str)
"""A layer's id: ``global``, ``region/eu/eu-west`` or ``device/dev-0042``."""

ETAG_SIZE = 8
