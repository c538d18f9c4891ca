"""``edgecfg optimize ...``: the fleet optimizer against a database (issue 17).

``objectives set FILE.toml`` checks the objectives against the schema's
tunable keys and stores them; ``status`` shows, per objective and stratum,
the current best settings, the evidence behind them and the optimizer's
rollouts in flight; ``propose --dry-run`` prints the proposals of a round
with their canary rollout plans, and starts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path
from typing import Any, cast

from edgecfg.cli.arguments import JSON, add_actions, add_command, argument
from edgecfg.cli.database import add_db_option, open_fleet
from edgecfg.errors import CommandError


def cmd_objectives_set(args: argparse.Namespace) -> int:
    from edgecfg.fleet.optimize import OptimizerService

    path = Path(args.file)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandError(f"{path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise CommandError(f"{path}: not TOML: {error}") from None
    with open_fleet(args) as fleet:
        objectives = OptimizerService(fleet).set_objectives(document)
    if args.json:
        print(json.dumps({"objectives": [o.as_json() for o in objectives]}, indent=2))
    else:
        for objective in objectives:
            constraints = "; ".join(c.text for c in objective.constraints) or "none"
            print(f"{objective.name}: {objective.goal} {objective.metric} on "
                  f"{objective.segment.text}, settings {', '.join(objective.settings)}; "
                  f"constraints: {constraints}")  # fmt: skip
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from edgecfg.fleet.optimize import OptimizerService

    with open_fleet(args) as fleet:
        status = OptimizerService(fleet).status(time.time())
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for row in cast(list[dict[str, Any]], status["segments"]):
        best = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}=?"
                         for k, v in row["best"].items())  # fmt: skip
        lead = row["leading"]
        leading = ("" if lead is None else f"; leading {lead['setting']}={lead['value']:g} "
                   f"({lead['relative']:+.1%}, {lead['devices']} device(s))")  # fmt: skip
        print(f"{row['objective']} {row['stratum']}: {row['devices']} device(s); best {best}; "
              f"{len(row['evidence'])} effect(s) measured{leading}")  # fmt: skip
        for effect in row["evidence"]:
            print(f"    {effect['setting']}={effect['value']:g} vs {effect['baseline']:g}: "
                  f"{effect['metric']} {effect['relative']:+.1%} [{effect['low']:.4g}, "
                  f"{effect['high']:.4g}] from {effect['devices']} device(s)")  # fmt: skip
    flight = cast(list[dict[str, Any]], status["in_flight"])
    print(f"in flight: {len(flight)} proposal rollout(s)")
    for row in flight:
        print(f"    {row['id']}: {row['phase']} {row['change']}")
    return 0


def cmd_propose(args: argparse.Namespace) -> int:
    from edgecfg.fleet.optimize import OptimizerService

    if not args.dry_run:
        raise CommandError(
            "only --dry-run is supported: start a proposal with 'edgecfg rollout start' "
            "from its plan"
        )
    with open_fleet(args) as fleet:
        made = OptimizerService(fleet).propose(time.time(), args.seed)
    rows = [proposal.as_json() for proposal in made.proposals]
    if args.json:
        print(json.dumps({"dry_run": True, "hypotheses": made.hypotheses, "proposals": rows},
                         indent=2))  # fmt: skip
        return 0
    print(f"dry run: {len(rows)} proposal(s); adoption bounds corrected for "
          f"{made.hypotheses} comparisons")  # fmt: skip
    for row in rows:
        plan = cast(dict[str, Any], row["plan"])
        print(f"  {row['kind']:<5} {row['objective']} {row['stratum']}: {row['setting']} "
              f"{row['baseline']:g} -> {row['value']:g} on {row['devices']} device(s); "
              f"rollout {plan['rollout_id']} stages {plan['stages']} guardrails "
              f"{sorted(plan['guardrails'])}")  # fmt: skip
    return 0


def register(commands: Any) -> None:
    """``edgecfg optimize ...``."""
    optimize = add_actions(commands, "optimize", "the fleet optimizer: objectives, status, "
                           "proposals")  # fmt: skip
    objectives = add_actions(optimize, "objectives", "the operator's objectives")
    q = add_command(objectives, "set", cmd_objectives_set, "check and store objectives",
                    argument("file", metavar="FILE.toml"), JSON)  # fmt: skip
    add_db_option(q)
    q = add_command(optimize, "status", cmd_status,
                    "best settings per segment, their evidence, proposals in flight",
                    JSON)  # fmt: skip
    add_db_option(q)
    q = add_command(
        optimize, "propose", cmd_propose, "the next round's proposals and their canary plans",
        argument("--dry-run", action="store_true", help="print them, start nothing"),
        argument("--seed", type=int, default=1, help="the Thompson draws' seed (default: 1)"),
        JSON,
    )  # fmt: skip
    add_db_option(q)
