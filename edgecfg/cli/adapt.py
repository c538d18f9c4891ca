"""The device's adaptive rules on the command line (issue 14): ``--rules
FILE`` and ``--reading NAME=NUMBER`` of ``agent run`` and ``agent adapt``,
and how the adaptation layer is printed.

A rules file given once is kept in the state directory (``rules.json``,
``rules.toml`` or ``rules.yaml``, as given), like the schema, so later runs
and ``agent adapt`` use it without being told again.
"""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from edgecfg.agent.rules import LocalRules
from edgecfg.agent.sealed_store import LocalState
from edgecfg.cli.arguments import argument
from edgecfg.cli.files import load_rules, print_json, read_bytes
from edgecfg.core.rules import INPUT_NAME, Adaptation, Adapted, describe
from edgecfg.core.schema import Schema
from edgecfg.errors import CommandError, show_value
from edgecfg.wire.documents import guess_format

KEPT: Final = ("rules.json", "rules.toml", "rules.yaml")
"""The names a rules file is kept under in a state directory (by format)."""

RULES: Final = argument(
    "--rules", metavar="FILE",
    help="adaptive rules (JSON, TOML or YAML; kept in the state dir for later runs)",
)  # fmt: skip
READING: Final = argument(
    "--reading", action="append", metavar="NAME=NUMBER",
    help="a measurement for the rules at this wake, e.g. battery_pct=18 (repeatable)",
)  # fmt: skip


def parse_readings(items: list[str] | None) -> dict[str, float]:
    """``NAME=NUMBER`` readings (None: the option was not given); the last of a name wins."""
    readings: dict[str, float] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not sep or INPUT_NAME.fullmatch(name) is None or not math.isfinite(value):
            raise CommandError(
                f"--reading {item}: expected NAME=NUMBER, NAME matching {INPUT_NAME.pattern} "
                "and a finite number (e.g. battery_pct=18, rsrp_dbm=-117)"
            )
        readings[name] = value
    return readings


def open_rules(
    args: argparse.Namespace, state: LocalState, schema: Schema | None
) -> LocalRules | None:
    """The device's rules: ``--rules FILE`` (then kept), else the ones kept in
    the state directory, else None.  The schema's local-override policy
    bounds every adapted value, so rules without a schema are refused."""
    folder = Path(args.state_dir)
    given: str | None = args.rules
    if given is not None:
        rules = load_rules(given)  # refuses a bad document before anything is kept
        fmt = guess_format(given)
        name = f"rules.{fmt}" if f"rules.{fmt}" in KEPT else "rules.json"
        for other in KEPT:
            (folder / other).unlink(missing_ok=True)
        (folder / name).write_bytes(read_bytes(given))
    else:
        kept = [folder / name for name in KEPT if (folder / name).exists()]
        if not kept:
            return None
        rules = load_rules(str(kept[0]))
    if schema is None:
        raise CommandError(
            f"{args.state_dir}: adaptive rules need the schema whose local-override policy "
            "bounds them; pass --schema FILE"
        )
    if args.reading and not rules.rules:
        raise CommandError("--reading given, but the rules file declares no rules")
    return LocalRules(state, rules, schema)


def print_adaptation(adaptation: Adaptation, *, as_json: bool) -> None:
    """The layer, one line per value (and per refused action)."""
    if as_json:
        rows: list[dict[str, object]] = [
            {"path": a.dotted, **adaptation_json(a)} for a in adaptation.values
        ]
        for refused in adaptation.refused:
            rows.append({"path": refused.dotted, "rule": refused.rule, "refused": refused.reason})
        print_json(rows)
        return
    if not adaptation.values and not adaptation.refused:
        print("no rule is active: nothing adapted")
    for adapted in adaptation.values:
        print(
            f"{adapted.dotted} = {show_value(adapted.value)}   (local adaptation since "
            f"{utc(adapted.since)}: {describe(adapted)})"
        )
    for refused in adaptation.refused:
        print(f"{refused.dotted}: rule {refused.rule} not applied: {refused.reason}")


def adaptation_json(adapted: Adapted, reported_at: float | None = None) -> dict[str, object]:
    """One adapted value for ``--json`` output (gateway explain, agent show)."""
    row: dict[str, object] = {
        "value": adapted.value,
        "rule": adapted.rule,
        "since": utc(adapted.since),
        "condition": adapted.condition,
        "reading": None if adapted.trigger is None else adapted.trigger.value,
        "bound": adapted.bound,
    }
    if reported_at is not None:
        row["reported"] = utc(reported_at)
    return row


def utc(seconds: float) -> str:
    """A wall-clock time as ``2026-12-07 16:00:00Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
