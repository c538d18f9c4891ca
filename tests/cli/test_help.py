"""Every command's --help renders (argparse expands %-formats in help texts,
so a bare "%" in one breaks that command's help and its parent's)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from edgecfg.cli.main import build_parser


def _parsers(
    parser: argparse.ArgumentParser, prefix: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
        if isinstance(action, argparse._SubParsersAction):  # pyright: ignore[reportPrivateUsage]
            choices: dict[str, argparse.ArgumentParser] = action.choices  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
            for name, child in choices.items():
                yield from _parsers(child, f"{prefix} {name}")


def test_every_command_s_help_renders() -> None:
    seen = 0
    for name, parser in _parsers(build_parser(), "edgecfg"):
        text = parser.format_help()
        assert text.startswith("usage: "), name
        seen += 1
    assert seen > 40  # the whole tree was walked, not the top alone
