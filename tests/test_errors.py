"""The one exception tree (edgecfg/errors.py, DESIGN §2): split by whose fault
an error is, carrying the data to act on, quoting values as users write them.
Which CoAP code each class gets: tests/gateway/test_errors.py."""

from __future__ import annotations

import inspect
import math

import pytest

from edgecfg import errors
from edgecfg.errors import (
    CommandError,
    DecodeError,
    DeltaBaseMismatch,
    DeltaError,
    DeltaIntegrityError,
    DirectiveConflict,
    EdgecfgError,
    EncodeError,
    FleetValidationError,
    LockViolation,
    ModelError,
    NotFound,
    OverBudget,
    PathError,
    PeerError,
    SchemaError,
    StoreConflict,
    StoreError,
    UsageError,
    ValidationError,
    Violation,
    WriteRefused,
    show_value,
)

FAULTS = (UsageError, PeerError, StoreError)


def test_every_error_has_the_one_root() -> None:
    classes = [
        cls for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == errors.__name__
    ]  # fmt: skip
    assert len(classes) >= 20
    assert all(issubclass(cls, EdgecfgError) for cls in classes)


@pytest.mark.parametrize(
    ("cls", "fault"),
    [
        (PathError, UsageError), (ModelError, UsageError), (EncodeError, UsageError),
        (SchemaError, UsageError), (WriteRefused, UsageError), (LockViolation, UsageError),
        (DirectiveConflict, UsageError), (FleetValidationError, UsageError),
        (DecodeError, PeerError), (ValidationError, PeerError), (DeltaError, PeerError),
        (DeltaBaseMismatch, PeerError), (DeltaIntegrityError, PeerError), (OverBudget, PeerError),
        (NotFound, StoreError), (StoreConflict, StoreError),
    ],
)  # fmt: skip
def test_each_error_says_whose_fault_it_is_and_only_one(
    cls: type[EdgecfgError], fault: type[EdgecfgError]
) -> None:
    assert [f for f in FAULTS if issubclass(cls, f)] == [fault]


def test_errors_that_callers_catch_as_builtins_are_builtins_too() -> None:
    # cbor2's habit (STYLE): DecodeError(EdgecfgError, ValueError)
    assert issubclass(DecodeError, ValueError) and issubclass(PathError, ValueError)
    assert issubclass(ModelError, TypeError) and issubclass(NotFound, LookupError)
    assert not issubclass(CommandError, (*FAULTS, ValueError))


def test_errors_carry_their_data() -> None:
    decode = DecodeError("truncated string", offset=7)
    assert (str(decode), decode.reason, decode.offset) == (
        "truncated string at byte offset 7", "truncated string", 7,
    )  # fmt: skip
    path = PathError("empty segment", path="a..b")
    assert (str(path), path.path) == ("empty segment (path 'a..b')", "a..b")
    model = ModelError("a set is not a model value", path="net.x")
    assert (str(model), model.reason) == ("a set is not a model value at net.x", model.reason)
    assert str(ModelError("not a map", path="")) == "not a map at the root"
    mismatch = DeltaBaseMismatch(expected=b"\x01\x02", actual=b"\xff")
    assert str(mismatch) == "delta base mismatch: delta is for base 0102, this tree checks as ff"
    budget = OverBudget("too many", limit="peer rate", retry_after_s=9)
    assert (budget.limit, budget.retry_after_s) == ("peer rate", 9)
    missing = NotFound("device", "dev-9")
    assert (str(missing), missing.kind, missing.key) == ("no such device: dev-9", "device", "dev-9")
    refused = WriteRefused("would break 3 devices", devices=3, examples=["d1", "d2"])
    assert (refused.devices, refused.examples) == (3, ("d1", "d2"))
    assert SchemaError("reused id", path="net.x").path == "net.x"


def test_a_validation_error_names_the_first_violation_and_counts_the_rest() -> None:
    first = Violation("net.uplink.interval_s", 5, ">= 10")
    second = Violation("device.id", None, "str", missing=True)
    error = ValidationError([first, second])
    assert str(first) == "net.uplink.interval_s: expected >= 10, got 5"
    assert str(second) == "device.id: expected str, it is missing"
    assert str(error) == "net.uplink.interval_s: expected >= 10, got 5 (and 1 more)"
    assert error.violations == (first, second)
    assert str(ValidationError([])) == "invalid configuration"
    assert str(Violation("", {}, "a map")) == "<root>: expected a map, got {}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "null"), (True, "true"), (1.5, "1.5"), (math.nan, "NaN"), ("é", '"é"'),
        (b"\x00\xff", "h'00ff'"), ([1, None, b"\x01"], "[1, null, h'01']"),
        ({"a": [True]}, '{"a": [true]}'), ({1}, "{1}"),  # not a model value: as Python shows it
    ],
)  # fmt: skip
def test_messages_quote_values_as_users_write_them(value: object, shown: str) -> None:
    assert show_value(value) == shown


def test_a_long_value_is_cut_to_the_shown_length() -> None:
    shown = show_value("x" * 500)
    assert len(shown) == errors.SHOWN_CHARS and shown.endswith("...")
