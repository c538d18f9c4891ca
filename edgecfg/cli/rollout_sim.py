"""``edgecfg sim rollout SCENARIO.toml``: a staged rollout in virtual time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecfg.errors import CommandError


def add_parser(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Add ``rollout`` under ``edgecfg sim``."""
    p = scenarios.add_parser(
        "rollout",
        help="a staged rollout in virtual time: the real rollout engine over a modelled fleet",
    )
    p.add_argument("scenario", type=Path, metavar="SCENARIO.toml")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line per decision (t_h, stage, decision, reason, "
                        "evidence)")  # fmt: skip
    p.add_argument("--runs", type=int, default=1, metavar="N",
                   help="play N seeds (the scenario's seed, then the next ones) and print "
                        "one line per run and the abort rate, not the decisions "
                        "(default: 1)")  # fmt: skip
    p.set_defaults(handler=cmd_sim_rollout)


def cmd_sim_rollout(args: argparse.Namespace) -> int:
    """Run the scenario; print each decision, or per-run outcomes with ``--runs``."""
    from edgecfg.sim.rollout import RolloutRun, load_scenario

    path = Path(args.scenario)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"{path}: {error.strerror}") from None
    scenario = load_scenario(text, source=str(path))
    if args.runs < 1:
        raise CommandError(f"--runs {args.runs}: expected at least 1")
    if args.runs > 1:
        aborted = 0
        for offset in range(args.runs):
            run = RolloutRun(scenario, seed=scenario.seed + offset)
            for _line in run.lines():
                pass
            aborted += run.summary.aborted
            row = {"seed": scenario.seed + offset, **run.summary.as_json()}
            print(json.dumps(row) if args.json else _run_text(row))
        rate = aborted / args.runs
        closing = {"runs": args.runs, "aborted": aborted, "abort_rate": rate}
        print(json.dumps(closing) if args.json else
              f"{aborted} of {args.runs} runs aborted or rolled back ({rate:.1%})")  # fmt: skip
        return 0
    run = RolloutRun(scenario)
    for line in run.lines():
        if args.json:
            print(json.dumps(line.as_json()), flush=True)
        else:
            print(f"{line.t_h:7.0f} h  wave {line.wave} stage {line.stage:>6}  "
                  f"{line.decision.value:<8} {line.reason}", flush=True)  # fmt: skip
    if not args.json:
        print(_run_text({"seed": scenario.seed, **run.summary.as_json()}))
    return 0


def _run_text(row: dict[str, object]) -> str:
    return (
        f"seed {row['seed']}: {row['final']} at {row['end_h']:.0f} h, phase {row['phase']}; "
        f"{row['applied']} devices applied, {row['reverted_by_device']} reverted by "
        f"themselves, {row['rolled_back_devices']} rolled back"
        + (f" (all back by {row['rolled_back_h']:.0f} h)" if row["rolled_back_h"] else "")
    )
