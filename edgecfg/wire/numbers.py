"""The numbers of the wire, defined once: content formats and CoAP codes.

:class:`ContentFormat` holds the CoAP Content-Format numbers edgecfg sends
and accepts (RFC 7252 §12.3's registry); :class:`CoapCode` the response
codes, as integers the way they travel (``class << 5 | detail``) and shown
the way people write them (``"2.05"``).  Both are :class:`~enum.IntEnum`, so
they compare equal to aiocoap's numbers and to raw header bytes.
"""

from __future__ import annotations

from enum import IntEnum


class ContentFormat(IntEnum):
    """CoAP Content-Format numbers."""

    CBOR = 60
    """application/cbor (RFC 8949): a configuration, a report, an answer."""
    SENML_JSON = 110
    """application/senml+json (RFC 8428)."""
    SENML_CBOR = 112
    """application/senml+cbor (RFC 8428)."""
    DELTA = 65100
    """application/vnd.edgecfg.delta+cbor, in the experimental range
    65000-65535 (DESIGN §5): a delta between two configurations."""


class CoapCode(IntEnum):
    """CoAP response codes (RFC 7252 §12.1.2, RFC 7959, RFC 8132, RFC 8516)."""

    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    CONTINUE = 0x5F
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88
    CONFLICT = 0x89
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D
    UNSUPPORTED_CONTENT_FORMAT = 0x8F
    UNPROCESSABLE_ENTITY = 0x96
    TOO_MANY_REQUESTS = 0x9D
    INTERNAL_SERVER_ERROR = 0xA0
    NOT_IMPLEMENTED = 0xA1
    BAD_GATEWAY = 0xA2
    SERVICE_UNAVAILABLE = 0xA3
    GATEWAY_TIMEOUT = 0xA4

    @property
    def dotted(self) -> str:
        """The code as people write it: ``"2.05"``."""
        return f"{self >> 5}.{self & 0x1F:02d}"

    @property
    def is_success(self) -> bool:
        return self >> 5 == 2

    @classmethod
    def parse(cls, text: str) -> CoapCode:
        """The code written ``"c.dd"``; ValueError names an unknown one."""
        major, dot, minor = text.partition(".")
        if not (dot and major.isdigit() and minor.isdigit() and len(minor) == 2):
            raise ValueError(f"a CoAP code is written c.dd, got {text!r}")
        try:
            return cls(int(major) << 5 | int(minor))
        except ValueError:
            raise ValueError(f"unknown CoAP response code {text}") from None
