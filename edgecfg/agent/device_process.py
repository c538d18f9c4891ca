"""How a device's agent process starts: the OpenSSL modules it never loads.

A plain-CoAP or OSCORE agent uses no TLS: OSCORE and the sealed store use
``cryptography``'s own AES-GCM, and the ETag's SHA-256 is CPython's built-in
``_sha256``.  Yet ``asyncio`` imports :mod:`ssl` on its first import (to
offer ``start_tls``) and :mod:`hashlib` imports ``_hashlib``: each maps the
system's libcrypto and initialises OpenSSL, 4.4 MB of RSS on this machine
that a 64 MB device pays for nothing (issue 16).

:func:`refuse_openssl` marks those modules as absent, exactly as on an
interpreter built without OpenSSL (a common build for devices): ``asyncio``
then runs without TLS, ``hashlib`` and ``hmac`` use CPython's built-in
digests (the same bytes, verified by ``tests/agent/test_device_process.py``).
It must run before anything imports ``asyncio`` or ``hashlib``, so only an
entry point that is a device's whole process calls it (the bench's agent
process; never a library import, never the gateway, which may serve TLS to
PostgreSQL).
"""

from __future__ import annotations

import sys
from typing import Final, cast

OPENSSL_MODULES: Final = ("ssl", "_ssl", "_hashlib")
"""The standard library's OpenSSL bindings; a device's agent needs none."""


class AlreadyLoaded(RuntimeError):
    """:func:`refuse_openssl` was called after an OpenSSL module was loaded."""


def refuse_openssl() -> None:
    """Make ``import ssl`` (and ``_ssl``, ``_hashlib``) fail in this process,
    as on a CPython built without OpenSSL.  Raises :class:`AlreadyLoaded`
    when one is loaded already (too late: its memory is spent)."""
    loaded = [name for name in OPENSSL_MODULES if sys.modules.get(name) is not None]
    if loaded:
        raise AlreadyLoaded(f"refuse_openssl() after {', '.join(loaded)} was imported")
    modules = cast(dict[str, object], sys.modules)
    for name in OPENSSL_MODULES:
        modules[name] = None  # an import of ``name`` now raises ImportError
