"""Paths: the dotted text form and its tuple form (edgecfg.core.path)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.path import ROOT, Path, format_path, is_prefix, parse_path
from edgecfg.errors import EdgecfgError, PathError, UsageError

# Keys rich in the characters the text form has to escape, plus non-ASCII.
KEY_ALPHABET = st.sampled_from(list("ab.\\ é水😀\t")) | st.characters()
keys = st.text(alphabet=KEY_ALPHABET, min_size=1, max_size=8)
paths = st.lists(keys, max_size=6).map(tuple)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("", ()),
        ("a", ("a",)),
        ("net.uplink.interval_s", ("net", "uplink", "interval_s")),
        ("a\\.b", ("a.b",)),
        ("a\\\\b", ("a\\b",)),
        ("a\\\\.b", ("a\\", "b")),
        ("a\\.\\.b.c", ("a..b", "c")),
        ("\\.", (".",)),
        ("\\\\", ("\\",)),
        ("ñ.水.😀", ("ñ", "水", "😀")),
        (" . ", (" ", " ")),
    ],
)
def test_parse_path_and_format_path_agree_on_table(text: str, path: Path) -> None:
    assert parse_path(text) == path
    assert format_path(path) == text


def test_root_is_the_empty_tuple_and_the_empty_text() -> None:
    assert ROOT == ()
    assert parse_path("") == ROOT
    assert format_path(ROOT) == ""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a..b", "empty key before offset 2"),
        (".a", "empty key before offset 0"),
        ("a.", "empty key at the end"),
        (".", "empty key before offset 0"),
        ("..", "empty key"),
        ("a\\", "dangling escape"),
        ("\\", "dangling escape"),
        ("a.b\\", "dangling escape"),
        ("a\\x", "only '.' and '\\' may be escaped"),
        ("a\\n", "only '.' and '\\' may be escaped"),
        ("\\a.b", "only '.' and '\\' may be escaped"),
        ("a\\ b", "only '.' and '\\' may be escaped"),
    ],
)
def test_parse_path_rejects_malformed_text_naming_the_path(text: str, fragment: str) -> None:
    with pytest.raises(PathError) as caught:
        parse_path(text)
    assert caught.value.path == text
    assert repr(text) in str(caught.value)
    assert fragment in str(caught.value)


def test_path_error_is_a_usage_error_and_a_value_error() -> None:
    with pytest.raises(PathError) as caught:
        parse_path("a..b")
    assert isinstance(caught.value, UsageError)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, EdgecfgError)


@pytest.mark.parametrize("path", [("",), ("a", ""), ("", "b"), ("a", "", "c")])
def test_format_path_rejects_an_empty_key(path: Path) -> None:
    with pytest.raises(PathError, match="empty key has no text form") as caught:
        format_path(path)
    assert caught.value.path == repr(path)


@given(paths)
def test_parse_path_inverts_format_path(path: Path) -> None:
    assert parse_path(format_path(path)) == path


@given(st.text(alphabet=st.sampled_from(list("ab.\\é")), max_size=12))
def test_valid_text_formats_back_to_itself_and_invalid_text_raises_path_error(text: str) -> None:
    # The text form is canonical: each path has exactly one spelling.
    try:
        path = parse_path(text)
    except PathError as error:
        assert error.path == text
    else:
        assert format_path(path) == text
        assert all(path)  # no empty key ever comes out of the text form


@given(paths)
def test_formatted_keys_are_separated_only_by_unescaped_dots(path: Path) -> None:
    text = format_path(path)
    unescaped_dots = 0
    index = 0
    while index < len(text):
        if text[index] == "\\":
            assert text[index + 1] in ".\\"
            index += 2
            continue
        unescaped_dots += text[index] == "."
        index += 1
    assert unescaped_dots == max(len(path) - 1, 0)


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ((), (), True),
        ((), ("a",), True),
        (("a",), ("a",), True),
        (("a",), ("a", "b"), True),
        (("a", "b"), ("a",), False),
        (("a",), ("ab",), False),
        (("b",), ("a", "b"), False),
    ],
)
def test_is_prefix_holds_for_the_path_itself_and_its_ancestors_only(
    prefix: Path, path: Path, expected: bool
) -> None:
    assert is_prefix(prefix, path) is expected
