"""The one table from edgecfg errors to CoAP codes (edgecfg/gateway/errors.py,
DESIGN §5): which code each error gets, what the payload says and what only
the log is told.  Over real CoAP the same codes are checked by
test_hostile_codes.py and test_coap.py."""

from __future__ import annotations

import logging

import pytest
from aiocoap.numbers.codes import Code

from edgecfg.core.ids import DeviceId
from edgecfg.errors import (
    DecodeError,
    DeltaBaseMismatch,
    DirectiveConflict,
    EdgecfgError,
    FleetValidationError,
    LockViolation,
    NotFound,
    OverBudget,
    PathError,
    SchemaError,
    StoreConflict,
    StoreError,
    UsageError,
    ValidationError,
    Violation,
)
from edgecfg.fleet.identity import AccessDenied
from edgecfg.fleet.sync import BadRequest, UnknownPath
from edgecfg.gateway.errors import (
    CODES,
    MAX_DIAGNOSTIC,
    STORE_RETRY_S,
    STORE_UNAVAILABLE,
    BadOption,
    MethodNotAllowed,
    StalePrecondition,
    UnsupportedFormat,
    error_response,
    log_failure,
)
from edgecfg.wire.blocks import BlockRangeError
from edgecfg.wire.senml import SenmlError

VIOLATION = Violation("net.uplink.interval_s", 5, ">= 10")

ERRORS = [
    pytest.param(MethodNotAllowed("DELETE on /cfg/dev-1"), Code.METHOD_NOT_ALLOWED, id="4.05"),
    pytest.param(BadOption("option 9 is unknown and critical"), Code.BAD_OPTION, id="4.02"),
    pytest.param(UnsupportedFormat("content-format 50"), Code.UNSUPPORTED_CONTENT_FORMAT,
                 id="4.15"),
    pytest.param(StalePrecondition("If-Match 00"), Code.PRECONDITION_FAILED, id="4.12-if-match"),
    pytest.param(StoreConflict("revision 3 is not current"), Code.PRECONDITION_FAILED,
                 id="4.12-store-conflict"),
    pytest.param(UnknownPath(DeviceId("dev-1"), "net.nope"), Code.NOT_FOUND, id="4.04-path"),
    pytest.param(NotFound("device", "dev-9"), Code.NOT_FOUND, id="4.04-device"),
    pytest.param(LockViolation("net.uplink is locked by global"), Code.FORBIDDEN, id="4.03-lock"),
    pytest.param(DirectiveConflict("two directives"), Code.CONFLICT, id="4.09"),
    pytest.param(FleetValidationError("3 devices would be invalid", devices=3),
                 Code.UNPROCESSABLE_ENTITY, id="4.22-fleet"),
    pytest.param(ValidationError([VIOLATION]), Code.UNPROCESSABLE_ENTITY, id="4.22-validation"),
    pytest.param(SchemaError("bad", path="net"), Code.UNPROCESSABLE_ENTITY, id="4.22-schema"),
    pytest.param(BlockRangeError(9, 2, 100), Code.BAD_REQUEST, id="4.00-block"),
    pytest.param(SenmlError("record 0 has no value"), Code.BAD_REQUEST, id="4.00-senml"),
    pytest.param(DecodeError("truncated", offset=3), Code.BAD_REQUEST, id="4.00-decode"),
    pytest.param(DeltaBaseMismatch(expected=b"\x01", actual=b"\x02"), Code.BAD_REQUEST,
                 id="4.00-delta"),
    pytest.param(PathError("empty segment", path="a..b"), Code.BAD_REQUEST, id="4.00-path"),
    pytest.param(BadRequest("from= is not hex"), Code.BAD_REQUEST, id="4.00-request"),
    pytest.param(UsageError("misuse"), Code.BAD_REQUEST, id="4.00-usage"),
    pytest.param(EdgecfgError("any other edgecfg error"), Code.BAD_REQUEST, id="4.00-root"),
]  # fmt: skip


@pytest.mark.parametrize(("error", "code"), ERRORS)
def test_a_client_mistake_gets_its_4xx_and_a_diagnostic(error: Exception, code: Code) -> None:
    response = error_response(error)
    assert response.code == code
    assert response.payload == str(error).encode("utf-8")
    assert response.opt.max_age is None


def test_an_unauthenticated_peer_gets_4_01_and_a_known_one_not_allowed_4_03() -> None:
    missing = error_response(AccessDenied("no identity", unauthenticated=True))
    refused = error_response(AccessDenied("dev-2 may not read /cfg/dev-1"))
    assert (missing.code, missing.payload) == (Code.UNAUTHORIZED, b"no identity")
    assert (refused.code, refused.payload) == (Code.FORBIDDEN, b"dev-2 may not read /cfg/dev-1")


def test_over_budget_gets_4_29_with_max_age_from_the_error() -> None:
    # RFC 8516 §3: Max-Age says when to try again
    response = error_response(OverBudget("too many", limit="peer exchanges", retry_after_s=17))
    assert (response.code, response.opt.max_age, response.payload) == (
        Code.TOO_MANY_REQUESTS,
        17,
        b"too many",
    )


def test_a_storage_failure_is_5_03_with_max_age_and_names_no_server_path() -> None:
    response = error_response(StoreError("disk I/O error in /var/lib/edgecfg/fleet.db"))
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert response.opt.max_age == STORE_RETRY_S
    assert response.payload == STORE_UNAVAILABLE
    assert b"/var/lib" not in response.payload


def test_a_bug_is_5_00_and_tells_the_client_nothing() -> None:
    response = error_response(KeyError("secret internal detail"))
    assert (response.code, response.payload) == (Code.INTERNAL_SERVER_ERROR, b"internal error")


def test_a_long_diagnostic_is_cut_to_the_limit() -> None:
    response = error_response(BadRequest("x" * 1000))
    assert response.payload == b"x" * MAX_DIAGNOSTIC


def test_every_subclass_is_listed_before_its_base_class() -> None:
    # the first matching row decides, so a base class listed earlier would
    # shadow its subclasses' codes
    classes = [cls for cls, _ in CODES]
    for index, cls in enumerate(classes):
        for later in classes[index + 1 :]:
            assert not issubclass(later, cls) or later is cls, (later, cls)


def test_no_client_mistake_is_ever_5_00() -> None:
    # DESIGN §5: never 5.00 for client mistakes
    for cls, code in CODES:
        assert code != Code.INTERNAL_SERVER_ERROR, cls


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="edgecfg.gateway")
    return caplog


def test_log_failure_logs_the_traceback_of_a_bug(gateway_log: pytest.LogCaptureFixture) -> None:
    error = KeyError("secret internal detail")
    log_failure(error_response(error), "coap://[::1]/cfg/dev-1", error)
    (record,) = gateway_log.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "unexpected error on coap://[::1]/cfg/dev-1"
    assert record.exc_info is not None and record.exc_info[1] is error


def test_log_failure_logs_a_storage_failure_in_one_line_with_its_words(
    gateway_log: pytest.LogCaptureFixture,
) -> None:
    error = StoreError("disk I/O error in /var/lib/edgecfg/fleet.db")
    log_failure(error_response(error), "coap://[::1]/state/dev-1", error)
    (record,) = gateway_log.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "storage failure on coap://[::1]/state/dev-1: disk I/O error in /var/lib/edgecfg/fleet.db"
    )
    assert record.exc_info is None


@pytest.mark.parametrize(("error", "code"), ERRORS)
def test_log_failure_is_silent_about_client_mistakes(
    gateway_log: pytest.LogCaptureFixture, error: Exception, code: Code
) -> None:
    response = error_response(error)
    assert response.code == code
    log_failure(response, "coap://[::1]/cfg/dev-1", error)
    assert gateway_log.records == []
