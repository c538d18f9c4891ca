"""``edgecfg sim battery``: a battery fleet's life with and without adaptive rules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final, cast

from edgecfg.errors import CommandError

FIXTURES: Final = Path(__file__).resolve().parents[2] / "fixtures"


def add_parser(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Add ``battery`` under ``edgecfg sim``."""
    p = scenarios.add_parser(
        "battery",
        help="a battery fleet from full to empty, with and without the adaptive rules",
    )
    p.add_argument("--rules", default=str(FIXTURES / "rules" / "examples.yaml"), metavar="FILE",
                   help="rules document (default: fixtures/rules/examples.yaml)")  # fmt: skip
    p.add_argument("--schema", default=str(FIXTURES / "schema" / "device.json"), metavar="FILE",
                   help="schema whose defaults and local bounds the devices run on "
                        "(default: fixtures/schema/device.json)")  # fmt: skip
    p.add_argument("--devices", type=int, default=20, help="fleet size (default: 20)")
    p.add_argument("--years", type=float, default=15.0,
                   help="horizon in years (default: 15)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="names one run (default: 1)")
    p.add_argument("--battery-wh", type=float, default=9.0,
                   help="battery energy in Wh (default: 9, two AA cells)")  # fmt: skip
    p.add_argument("--chemistry", default="alkaline-2aa",
                   choices=("alkaline-2aa", "li-socl2", "li-ion"),
                   help="discharge shape and self-discharge (default: alkaline-2aa)")  # fmt: skip
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write summary.json and battery.png there")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_sim_battery)


def cmd_sim_battery(args: argparse.Namespace) -> int:
    """Run the fleet twice (paired seeds) and print days to empty and the gain."""
    from edgecfg.cli.files import load_rules, load_schema
    from edgecfg.sim.battery import Fleet, run
    from edgecfg.sim.report import plot_battery

    fleet = Fleet(
        devices=args.devices, years=args.years, seed=args.seed, chemistry=args.chemistry,
        battery_wh=args.battery_wh,
    )  # fmt: skip
    rules, schema = load_rules(args.rules), load_schema(args.schema)
    live = sys.stderr.isatty()

    def progress(done: float) -> None:
        if live:
            sys.stderr.write(f"\r  {done:4.0%} of the devices")
            sys.stderr.flush()

    outcome = run(fleet, rules, schema, progress=progress)
    if live:
        sys.stderr.write("\n")
    summary = outcome.summary()
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as error:
            raise CommandError(f"{args.out}: {error.strerror}") from None
        try:
            plot_battery(outcome, str(args.out / "battery.png"))
        except ImportError:
            raise CommandError(
                "the plot needs matplotlib: install edgecfg[sim] (uv sync does); "
                f"{args.out / 'summary.json'} is written"
            ) from None
    if args.json:
        print(json.dumps(summary))
        return 0
    without = cast(dict[str, float], summary["days_to_empty_without"])
    adapted = cast(dict[str, float], summary["days_to_empty_with_rules"])
    print(
        f"{fleet.devices} devices, {fleet.battery_wh:g} Wh {fleet.chemistry}, NB-IoT, "
        f"telemetry on the schema's interval; rules: {args.rules}\n"
        f"days to empty, p10 / median / p90: without rules {_days(without)}; "
        f"with rules {_days(adapted)}\n"
        f"life gained, paired by device: median +{summary['median_gain_pct']:.1f}%, "
        f"least +{summary['min_gain_pct']:.1f}%; wakes with a rule active: "
        f"{summary['adapted_wake_share']:.0%}; still running at the {args.years:g}-year "
        f"horizon: {summary['still_running_at_horizon']}"
    )
    if args.out is not None:
        print(f"wrote {args.out / 'summary.json'} and {args.out / 'battery.png'}")
    return 0


def _days(spread: dict[str, float]) -> str:
    return f"{spread['p10']:.0f} / {spread['median']:.0f} / {spread['p90']:.0f}"
