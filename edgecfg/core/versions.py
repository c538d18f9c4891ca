"""Dotted numeric versions and ranges for agent, firmware and schema versions.

A version is dotted decimal (``2``, ``1.4``, ``3.0.12``); a suffix after ``-``
or ``+`` (``2.1.0-nb``) is ignored for ordering.  Missing components count as
zero, so ``1.4 == 1.4.0``.  A range is a comma-separated list of clauses with
``>=``, ``>``, ``<=``, ``<``, ``==`` (``">=1.2, <3"``); an empty range admits
every version.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from edgecfg.errors import UsageError

Version = tuple[int, ...]

_VERSION = re.compile(r"^v?([0-9]+(?:\.[0-9]+)*)(?:[-+].*)?$")
_CLAUSE = re.compile(r"^(>=|<=|==|>|<)\s*(\S+)$")
_OPS: dict[str, Callable[[Version, Version], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


def parse_version(text: str) -> Version:
    """Parse ``1.4.2`` (or ``v1.4.2-rc1``) into a comparable tuple, trailing zeros dropped."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise UsageError(f"version {text!r} is not dotted decimal like '1.4.2'")
    parts = [int(part) for part in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A set of versions given by clauses that must all hold."""

    clauses: tuple[tuple[str, Version], ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Parse ``">=1.2, <3"``; raises :class:`UsageError` naming the bad clause."""
        clauses: list[tuple[str, Version]] = []
        for raw in text.split(","):
            clause = raw.strip()
            if not clause:
                continue
            match = _CLAUSE.match(clause)
            if match is None:
                raise UsageError(
                    f"version range clause {clause!r} must look like '>=1.2' "
                    "(operators >=, >, <=, <, ==)"
                )
            clauses.append((match.group(1), parse_version(match.group(2))))
        return cls(tuple(clauses), text.strip())

    def admits(self, version: str | Version) -> bool:
        """True when ``version`` satisfies every clause."""
        parsed = parse_version(version) if isinstance(version, str) else version
        return all(_OPS[op](parsed, bound) for op, bound in self.clauses)

    def __str__(self) -> str:
        return self.text or "any"


ANY_VERSION = VersionRange()
