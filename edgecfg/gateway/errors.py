# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportUnknownLambdaType=false, reportAttributeAccessIssue=false
"""One table from edgecfg errors to CoAP response codes (DESIGN §5).

Client mistakes are 4.xx with a short diagnostic payload, never 5.00.  A
storage failure (disk full, I/O error, a locked database) is not the client's:
5.03 Service Unavailable with Max-Age, and a payload that names no server path
(the log has the details, :func:`log_failure`).  Budgets and quotas refused
by admission are 5.03 or 4.29 (RFC 8516) with Max-Age too.
"""

from __future__ import annotations

import logging
from typing import Final

import aiocoap

from edgecfg.errors import (
    DecodeError,
    DeltaError,
    DirectiveConflict,
    EdgecfgError,
    FleetValidationError,
    LockViolation,
    NotFound,
    OverBudget,
    PathError,
    PeerError,
    SchemaError,
    StoreConflict,
    StoreError,
    UsageError,
    ValidationError,
)
from edgecfg.fleet.identity import AccessDenied
from edgecfg.fleet.sync import BadRequest, UnknownPath
from edgecfg.wire.blocks import BlockRangeError
from edgecfg.wire.messages import MessageError
from edgecfg.wire.senml import SenmlError

Code = aiocoap.numbers.codes.Code


class MethodNotAllowed(PeerError):
    """A method the resource does not define (4.05)."""


class BadOption(PeerError):
    """An unknown critical option, or a non-repeatable one repeated (4.02,
    RFC 7252 §5.4.1 and §5.4.5)."""


class UnsupportedFormat(PeerError):
    """A request body in a content-format the resource does not take (4.15)."""


class StalePrecondition(PeerError):
    """An If-Match that names no current version (4.12, RFC 7252 §5.10.8.1)."""


# Most specific first; the first matching class decides.
CODES: Final[tuple[tuple[type[Exception], Code], ...]] = (
    (MethodNotAllowed, Code.METHOD_NOT_ALLOWED),
    (BadOption, Code.BAD_OPTION),
    (UnsupportedFormat, Code.UNSUPPORTED_CONTENT_FORMAT),
    (StalePrecondition, Code.PRECONDITION_FAILED),
    (UnknownPath, Code.NOT_FOUND),
    (NotFound, Code.NOT_FOUND),
    (LockViolation, Code.FORBIDDEN),
    (DirectiveConflict, Code.CONFLICT),
    (FleetValidationError, Code.UNPROCESSABLE_ENTITY),
    (ValidationError, Code.UNPROCESSABLE_ENTITY),
    (SchemaError, Code.UNPROCESSABLE_ENTITY),
    (StoreConflict, Code.PRECONDITION_FAILED),
    (BlockRangeError, Code.BAD_REQUEST),
    (MessageError, Code.BAD_REQUEST),
    (SenmlError, Code.BAD_REQUEST),
    (DecodeError, Code.BAD_REQUEST),
    (DeltaError, Code.BAD_REQUEST),
    (PathError, Code.BAD_REQUEST),
    (BadRequest, Code.BAD_REQUEST),
    (UsageError, Code.BAD_REQUEST),
    (OverBudget, Code.TOO_MANY_REQUESTS),
    (StoreError, Code.SERVICE_UNAVAILABLE),  # after NotFound and StoreConflict
)

MAX_DIAGNOSTIC: Final = 200
STORE_RETRY_S: Final = 30
"""Max-Age of a 5.03 for a storage failure: when to try again."""
STORE_UNAVAILABLE: Final = b"storage unavailable; retry later"

log = logging.getLogger("edgecfg.gateway")


def error_response(error: Exception) -> aiocoap.Message:
    """The CoAP response for an error raised while handling a request."""
    if isinstance(error, AccessDenied):
        code = Code.UNAUTHORIZED if error.unauthenticated else Code.FORBIDDEN
    else:
        code = next((c for cls, c in CODES if isinstance(error, cls)), None)
        if code is None:
            code = (
                Code.BAD_REQUEST
                if isinstance(error, EdgecfgError)
                else (Code.INTERNAL_SERVER_ERROR)
            )
    if code == Code.SERVICE_UNAVAILABLE:
        response = aiocoap.Message(code=code, payload=STORE_UNAVAILABLE)
        response.opt.max_age = STORE_RETRY_S
        return response
    text = str(error) if code != Code.INTERNAL_SERVER_ERROR else "internal error"
    response = aiocoap.Message(code=code, payload=text.encode("utf-8")[:MAX_DIAGNOSTIC])
    if isinstance(error, OverBudget):
        response.opt.max_age = error.retry_after_s  # RFC 8516 §3
    return response


def log_failure(response: aiocoap.Message, uri: str, error: Exception) -> None:
    """Log what a client is not told: the traceback of a 5.00, one line (with
    the store's own words, paths included) for a storage failure."""
    if response.code == Code.INTERNAL_SERVER_ERROR:
        log.error("unexpected error on %s", uri, exc_info=error)
    elif response.code == Code.SERVICE_UNAVAILABLE:
        log.error("storage failure on %s: %s", uri, error)
