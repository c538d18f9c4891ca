"""Dotted versions and version ranges (edgecfg.core.versions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.versions import ANY_VERSION, Version, VersionRange, parse_version
from edgecfg.errors import UsageError


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("2", (2,)),
        ("1.4", (1, 4)),
        ("1.4.2", (1, 4, 2)),
        ("3.0.12", (3, 0, 12)),
        ("1.4.0", (1, 4)),
        ("1.0.0.0", (1,)),
        ("0", (0,)),
        ("0.0.0", (0,)),
        ("0.1", (0, 1)),
        ("010.02", (10, 2)),
        ("v1.4.2", (1, 4, 2)),
        ("v1.4.2-rc1", (1, 4, 2)),
        ("2.1.0-nb", (2, 1)),
        ("1.0.0+build.5", (1,)),
        ("1.2-", (1, 2)),
        ("  1.2  ", (1, 2)),
    ],
)
def test_parse_version_reads_dotted_decimal_dropping_trailing_zeros_and_suffixes(
    text: str, version: Version
) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize(
    "text", ["", " ", "abc", "1..2", "1.", ".1", "1.x", "-1", "1 .2", "v", "V1", "1,2", "x1.2"]
)
def test_parse_version_rejects_text_that_is_not_dotted_decimal(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_version(text)
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_parse_version_rejects_non_ascii_digits() -> None:
    with pytest.raises(UsageError):
        parse_version("\u0661.\u0662")  # ARABIC-INDIC DIGIT ONE . TWO


def test_versions_order_numerically_not_textually() -> None:
    texts = ["1.10", "1.2", "1.9.9", "0.9", "2", "1.2.1", "10"]
    ordered = sorted(texts, key=parse_version)
    assert ordered == ["0.9", "1.2", "1.2.1", "1.9.9", "1.10", "2", "10"]


@pytest.mark.parametrize(
    ("a", "b"),
    [("1.4", "1.4.0"), ("1", "1.0.0"), ("2.1.0-nb", "2.1"), ("v3", "3.0+x"), ("0", "0.0")],
)
def test_missing_components_and_suffixes_do_not_change_a_version(a: str, b: str) -> None:
    assert parse_version(a) == parse_version(b)


@pytest.mark.parametrize(("low", "high"), [("1.4", "1.4.1"), ("1", "1.0.1"), ("0.9.9", "1")])
def test_a_missing_component_orders_as_zero(low: str, high: str) -> None:
    assert parse_version(low) < parse_version(high)


components = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=5)


@given(components, components)
def test_version_order_equals_order_of_zero_padded_components(a: list[int], b: list[int]) -> None:
    width = max(len(a), len(b))
    padded_a = a + [0] * (width - len(a))
    padded_b = b + [0] * (width - len(b))
    va = parse_version(".".join(map(str, a)))
    vb = parse_version(".".join(map(str, b)))
    assert (va < vb) == (padded_a < padded_b)
    assert (va == vb) == (padded_a == padded_b)


@given(components, st.integers(min_value=0, max_value=3))
def test_appending_zero_components_keeps_the_version(parts: list[int], zeros: int) -> None:
    text = ".".join(map(str, parts))
    assert parse_version(text + ".0" * zeros) == parse_version(text)


# ---------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("text", "version", "admitted"),
    [
        (">=1.2, <3", "1.2", True),
        (">=1.2, <3", "1.2.0", True),
        (">=1.2, <3", "2.9.9", True),
        (">=1.2, <3", "3", False),
        (">=1.2, <3", "3.0.0-rc1", False),
        (">=1.2, <3", "1.1.99", False),
        (">1.2", "1.2", False),
        (">1.2", "1.2.1", True),
        ("<=2", "2.0", True),
        ("<=2", "2.0.1", False),
        ("<2", "1.99", True),
        ("==1.4", "1.4.0", True),
        ("==1.4", "1.4.1", False),
        (">= 1.0 , < 2", "1.5", True),
        (">=1,", "1", True),
        ("", "0", True),
        ("", "999.1", True),
    ],
)
def test_version_range_admits_exactly_versions_meeting_every_clause(
    text: str, version: str, admitted: bool
) -> None:
    assert VersionRange.parse(text).admits(version) is admitted


def test_version_range_admits_a_parsed_version_tuple() -> None:
    assert VersionRange.parse(">=1.2").admits((1, 3))
    assert not VersionRange.parse(">=1.2").admits((1, 1))


def test_version_range_keeps_its_clauses_and_text() -> None:
    parsed = VersionRange.parse(" >=1.2.0, <3 ")
    assert parsed.clauses == ((">=", (1, 2)), ("<", (3,)))
    assert str(parsed) == ">=1.2.0, <3"


def test_empty_range_is_any_version() -> None:
    assert VersionRange.parse("") == ANY_VERSION
    assert str(ANY_VERSION) == "any"
    assert ANY_VERSION.admits("0")


@pytest.mark.parametrize("text", ["=>1", "1.2", "~1.2", ">=1.2 <3", "!=1", "= 1", "<"])
def test_version_range_rejects_a_malformed_clause_naming_it(text: str) -> None:
    with pytest.raises(UsageError, match="version range clause") as caught:
        VersionRange.parse(text)
    assert repr(text.strip()) in str(caught.value)


@pytest.mark.parametrize(("text", "bad"), [(">=1, <abc", "abc"), (">=", "="), (">>1", ">1")])
def test_version_range_rejects_a_bad_version_inside_a_clause(text: str, bad: str) -> None:
    with pytest.raises(UsageError, match=f"version '{bad}' is not dotted decimal"):
        VersionRange.parse(text)


def test_version_range_admits_raises_for_a_bad_version() -> None:
    with pytest.raises(UsageError):
        VersionRange.parse(">=1").admits("one")
