"""The SQL stores' common half (the contract itself is test_store.py's): the
prefix range behind ``layer_ids`` and the one rewrite of the shared queries
into psycopg's parameter style."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgecfg.store.postgres import (
    _psycopg,  # pyright: ignore[reportPrivateUsage]
)
from edgecfg.store.sql import GROUP_MEMBERS_SQL, prefix_upper_bound

# Text PostgreSQL and UTF-8 can hold: no NUL, no lone surrogates.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(prefix=texts, other=texts)
def test_the_prefix_range_holds_exactly_the_strings_with_that_prefix(
    prefix: str, other: str
) -> None:
    upper = prefix_upper_bound(prefix)
    for candidate in (other, prefix + other):
        in_range = prefix <= candidate and (upper is None or candidate < upper)
        assert in_range == candidate.startswith(prefix)


def test_a_prefix_of_only_the_last_code_point_has_no_upper_bound() -> None:
    assert prefix_upper_bound("") is None
    assert prefix_upper_bound(chr(0x10FFFF) * 2) is None
    assert prefix_upper_bound("a" + chr(0x10FFFF)) == "b"


def test_the_upper_bound_skips_the_surrogates() -> None:
    assert prefix_upper_bound(chr(0xD7FF)) == chr(0xE000)


def test_shared_queries_take_psycopg_placeholders_and_keep_casts() -> None:
    assert _psycopg("SELECT a FROM t WHERE b = ? AND c > ?") == (
        "SELECT a FROM t WHERE b = %s AND c > %s"
    )
    assert _psycopg("SELECT x::bigint WHERE y = :name") == "SELECT x::bigint WHERE y = %(name)s"
    rewritten = _psycopg(GROUP_MEMBERS_SQL)
    assert ":dimension" not in rewritten
    assert rewritten.count("%(path)s") == 3
    assert rewritten.count("%(dimension)s") == 2
