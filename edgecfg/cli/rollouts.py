"""``edgecfg rollout ...``: start, watch, steer and audit staged rollouts (issue 15).

``start PLAN.toml`` assigns the target's devices to cohorts and offers the
first stage; ``tick`` runs the loop once (the gateway runs it as part of
its housekeeping; cron can run it against a database no gateway serves);
``status``, ``history`` report; ``pause``, ``resume``, ``advance`` and
``rollback`` need ``--reason``, which is recorded with the operator.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
import tomllib
from pathlib import Path
from typing import Any, cast

from edgecfg.cli.arguments import JSON, add_actions, add_command, argument
from edgecfg.cli.database import add_db_option, open_fleet
from edgecfg.core.rollout import Action
from edgecfg.errors import CommandError
from edgecfg.fleet.rollouts import RolloutService


def _plan_table(path: Path) -> dict[str, object]:
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandError(f"{path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise CommandError(f"{path}: not TOML: {error}") from None
    plan = table.get("plan", table)  # a scenario's [plan] table, or the keys at the top
    if not isinstance(plan, dict):
        raise CommandError(f"{path}: [plan] must be a table")
    return cast(dict[str, object], plan)


def cmd_rollout_start(args: argparse.Namespace) -> int:
    table = _plan_table(Path(args.plan))
    with open_fleet(args) as fleet:
        service = RolloutService(fleet)
        rollout = service.start(table, now=time.time(), author=args.author, rollout_id=args.id)
        status = service.status(rollout, time.time())
    _show(status, args.json)
    return 0


def cmd_rollout_status(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        status = RolloutService(fleet).status(args.id, time.time())
    _show(status, args.json)
    return 0


def cmd_rollout_history(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        rows = RolloutService(fleet).history(args.id)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(cast(float, row["at"])))
        if row["kind"] == "decision":
            print(f"{stamp}  {row['stage']:>6}  {row['decision']:<8} {row['reason']}")
        else:
            who = row.get("author", "?")
            print(f"{stamp}  {'':>6}  {row['action']:<8} by {who}: {row.get('reason', '')}")
    return 0


def cmd_rollout_tick(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        made = RolloutService(fleet).tick(time.time())
    for rollout, outcome in made:
        line = {"id": rollout, "decision": outcome.decision.value, "reason": outcome.reason}
        print(json.dumps(line) if args.json else f"{rollout}: {outcome.decision.value}: "
              f"{outcome.reason}")  # fmt: skip
    return 0


def _act(action: Action) -> Any:
    def command(args: argparse.Namespace) -> int:
        with open_fleet(args) as fleet:
            service = RolloutService(fleet)
            service.act(args.id, action, args.reason, now=time.time(), author=args.author)
            status = service.status(args.id, time.time())
        _show(status, args.json)
        return 0

    return command


def _show(status: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return
    offered = cast(dict[str, int], status["offered"])
    print(f"rollout {status['id']}: {status['phase']}, wave {status['wave']} stage "
          f"{status['stage']} of {status['stages']}; target {status['target']}, "
          f"{status['devices']} device(s)")  # fmt: skip
    print(f"  change: {status['change']}")
    print(f"  offered: {offered.get('canary', 0)} canary, {offered.get('control', 0)} control")
    counts = cast(dict[str, int], status["devices_by_status"])
    print("  devices: " + ", ".join(f"{n} {name}" for name, n in sorted(counts.items())))
    for stage, row in cast(dict[str, dict[str, float]], status["coverage_by_stage"]).items():
        wave, name = stage.split(":", 1)
        print(f"  wave {wave} stage {name}: {row['proven']:.0f} of {row['canary']:.0f} canary "
              f"devices proven ({row['coverage']:.0%})")  # fmt: skip
    if status["reason"]:
        print(f"  {status['reason']}")
    last = cast(dict[str, object] | None, status["last_decision"])
    if last is not None:
        print(f"  last decision at {last['t_h']:.0f} h: {last['decision']}: {last['reason']}")
        evidence = cast(dict[str, object], last["evidence"])
        print(f"  coverage {evidence['coverage']:.1%}")
        for name, reading in cast(dict[str, dict[str, object]], evidence["guardrails"]).items():
            print(f"    {name:<14} estimate {reading['estimate']}  bound [{reading['lower']}, "
                  f"{reading['upper']}]  harm {reading['harm']}  "
                  f"non-inferior {reading['non_inferior']}")  # fmt: skip
    print(f"  next decision at {status['next_decision_h']:.0f} h after the start")


def register(commands: Any) -> None:
    """``edgecfg rollout ...``."""
    rollout = add_actions(commands, "rollout", "staged rollouts: canaries, gates, rollback")
    author = argument("--author", default=getpass.getuser(),
                      help="who starts or steers (default: the login name)")  # fmt: skip
    rollout_id = argument("id", metavar="ID")
    for name, handler, text, *declared in (
        ("start", cmd_rollout_start, "assign cohorts and offer the first stage",
         argument("plan", metavar="PLAN.toml"),
         argument("--id", help="the rollout's id (default: r-<random>)"), author),
        ("status", cmd_rollout_status, "phase, stage, cohorts, the last decision", rollout_id),
        ("history", cmd_rollout_history, "every decision and action", rollout_id),
        ("tick", cmd_rollout_tick, "run the rollout loop once (the gateway does it too)"),
    ):  # fmt: skip
        q = add_command(rollout, name, handler, text, *declared, JSON)
        add_db_option(q)
    actions: tuple[Action, ...] = ("pause", "resume", "advance", "rollback")
    for action in actions:
        q = add_command(
            rollout, action, _act(action), f"{action} a rollout (with a reason)",
            rollout_id, argument("--reason", required=True, help="why (recorded)"), author, JSON,
        )  # fmt: skip
        add_db_option(q)
