"""``edgecfg sim optimize``: the optimizer against a fleet with a hidden ground truth."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgecfg.errors import CommandError


def add_parser(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Add ``optimize`` under ``edgecfg sim``."""
    p = scenarios.add_parser(
        "optimize",
        help="a fleet on poor settings; the optimizer's canaries find better ones",
    )
    p.add_argument("--devices", type=int, default=6400, help="fleet size (default: 6400)")
    p.add_argument("--weeks", type=int, default=12, help="simulated weeks (default: 12)")
    p.add_argument("--seed", type=int, default=1, help="names one run (default: 1)")
    p.add_argument("--aa", action="store_true",
                   help="an A/A fleet: no setting has any effect; counts the runs in which "
                        "the optimizer proposes a change")  # fmt: skip
    p.add_argument("--runs", type=int, default=1, metavar="N",
                   help="play N seeds (--seed, then the next ones) and print the share of "
                        "runs with a proposed change and the gains (default: 1)")  # fmt: skip
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write summary.json and optimize.png there (first run)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_sim_optimize)


def cmd_sim_optimize(args: argparse.Namespace) -> int:
    """Run the fleet; print the gain, freshness and breaches (or, with
    ``--runs``, how often a change was proposed and the gains' spread)."""
    from edgecfg.sim.optimize import Outcome, Setup, run

    if args.runs < 1 or args.devices < 16 or args.weeks < 1:
        raise CommandError("--runs and --weeks must be at least 1, --devices at least 16")
    live = sys.stderr.isatty()
    outcomes: list[Outcome] = []
    for index in range(args.runs):
        setup = Setup(devices=args.devices, weeks=args.weeks, seed=args.seed + index, aa=args.aa)
        outcome = run(setup)
        outcomes.append(outcome)
        if live:
            sys.stderr.write(f"\r  run {index + 1} of {args.runs}")
            sys.stderr.flush()
    if live:
        sys.stderr.write("\n")
    first = outcomes[0]
    setup = first.setup
    if args.out is not None:
        _write(first, args.out)
    if args.runs == 1:
        summary = first.summary()
        if args.json:
            print(json.dumps(summary))
            return 0
        print(
            f"{setup.devices:,} devices, {setup.weeks} weeks, seed {setup.seed}"
            f"{' (A/A: no setting has an effect)' if setup.aa else ''}\n"
            f"battery life gain: {first.battery_life_gain:+.1%} (fleet mean), "
            f"{first.median_device_gain:+.1%} (median device)\n"
            f"freshness within {summary['freshness_limit_s']:g} s: {first.freshness_ok} "
            f"(longest interval {first.max_interval_s:g} s); guardrail breaches: "
            f"{first.guardrail_breaches}\n"
            f"adoptions proposed {first.adoptions_proposed}, passed {first.rollouts_passed}, "
            f"stopped by the gates {first.rollouts_stopped}; trials {first.trials}"
        )
        return 0
    changed = sum(1 for o in outcomes if o.adoptions_proposed > 0)
    gains = sorted(o.battery_life_gain for o in outcomes)
    summary_runs: dict[str, object] = {
        "runs": args.runs, "aa": args.aa, "devices": args.devices, "weeks": args.weeks,
        "first_seed": args.seed, "runs_with_a_proposed_change": changed,
        "change_rate": round(changed / args.runs, 4),
        "battery_life_gain_min": round(gains[0], 4),
        "battery_life_gain_median": round(gains[len(gains) // 2], 4),
        "freshness_ok_runs": sum(1 for o in outcomes if o.freshness_ok),
        "guardrail_breaches": sum(o.guardrail_breaches for o in outcomes),
        "per_run": [{"seed": o.setup.seed, "battery_life_gain": round(o.battery_life_gain, 4),
                     "adoptions_proposed": o.adoptions_proposed,
                     "guardrail_breaches": o.guardrail_breaches} for o in outcomes],
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary_runs))
        return 0
    print(f"{args.runs} runs{' (A/A)' if args.aa else ''}: a change proposed in {changed} "
          f"({changed / args.runs:.1%}); battery life gain min {gains[0]:+.1%}, median "
          f"{gains[len(gains) // 2]:+.1%}; "
          f"breaches {summary_runs['guardrail_breaches']}")  # fmt: skip
    return 0


def _write(outcome: object, out: Path) -> None:
    from edgecfg.sim.optimize import Outcome
    from edgecfg.sim.optimize_report import plot_optimize

    assert isinstance(outcome, Outcome)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(outcome.summary(), indent=2) + "\n")
    except OSError as error:
        raise CommandError(f"{out}: {error.strerror}") from None
    try:
        plot_optimize(outcome, str(out / "optimize.png"))
    except ImportError:
        raise CommandError(
            "the plot needs matplotlib: install edgecfg[sim] (uv sync does); "
            f"{out / 'summary.json'} is written"
        ) from None
