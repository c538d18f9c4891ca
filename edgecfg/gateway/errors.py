# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportUnknownLambdaType=false, reportAttributeAccessIssue=false
"""One table from edgecfg errors to CoAP response codes (DESIGN §5).

Client mistakes are 4.xx with a short diagnostic payload, never 5.00.
"""

from __future__ import annotations

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
    PathError,
    SchemaError,
    StoreConflict,
    UsageError,
    ValidationError,
)
from edgecfg.gateway.identity import AccessDenied
from edgecfg.gateway.service import BadRequest, UnknownPath
from edgecfg.wire.blocks import BlockRangeError
from edgecfg.wire.senml import SenmlError

Code = aiocoap.numbers.codes.Code

# Most specific first; the first matching class decides.
CODES: Final[tuple[tuple[type[Exception], Code], ...]] = (
    (UnknownPath, Code.NOT_FOUND),
    (NotFound, Code.NOT_FOUND),
    (LockViolation, Code.FORBIDDEN),
    (DirectiveConflict, Code.CONFLICT),
    (FleetValidationError, Code.UNPROCESSABLE_ENTITY),
    (ValidationError, Code.UNPROCESSABLE_ENTITY),
    (SchemaError, Code.UNPROCESSABLE_ENTITY),
    (StoreConflict, Code.PRECONDITION_FAILED),
    (BlockRangeError, Code.BAD_REQUEST),
    (SenmlError, Code.BAD_REQUEST),
    (DecodeError, Code.BAD_REQUEST),
    (DeltaError, Code.BAD_REQUEST),
    (PathError, Code.BAD_REQUEST),
    (BadRequest, Code.BAD_REQUEST),
    (UsageError, Code.BAD_REQUEST),
)

MAX_DIAGNOSTIC: Final = 200


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
    text = str(error) if code != Code.INTERNAL_SERVER_ERROR else "internal error"
    return aiocoap.Message(code=code, payload=text.encode("utf-8")[:MAX_DIAGNOSTIC])
