"""``edgecfg sim network``: real agents against a real gateway over shaped links."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecfg.errors import CommandError


def add_parser(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Add ``network`` under ``edgecfg sim``."""
    from edgecfg.sim.shaping import PROFILES

    p = scenarios.add_parser(
        "network",
        help="N real agent processes, each in its own network namespace, against a real "
        "gateway process over NB-IoT-like links (needs root: ip netns, tc tbf)",
    )
    p.add_argument("--agents", type=int, default=3, help="agent processes (default: 3)")
    p.add_argument("--profile", default="nbiot", choices=sorted(PROFILES),
                   help="the links' round trips, rates, loss, bursts, outages "
                        "(default: nbiot: 1-10 s round trips, 20-60 kbit/s)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=300.0,
                   help="the phase with edits, outages and loss bursts (default: 300)")  # fmt: skip
    p.add_argument("--edits", type=int, default=5,
                   help="operator layer edits in that phase (default: 5)")  # fmt: skip
    p.add_argument("--group-share", type=float, default=0.5,
                   help="share of edits on group layers (default: 0.5)")  # fmt: skip
    p.add_argument("--interval", type=float, default=30.0, metavar="S",
                   help="seconds between an agent's syncs (default: 30)")  # fmt: skip
    p.add_argument("--settle", type=float, default=600.0, metavar="S",
                   help="after the phase, wait at most S seconds for every agent to hold "
                        "its config (default: 600)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="names one run (default: 1)")
    p.add_argument("--out", type=Path, metavar="DIR", required=True,
                   help="report folder: summary.json and network.png")  # fmt: skip
    p.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the database and the agents' state there (default: removed)",
    )
    p.set_defaults(handler=cmd_sim_network)


def cmd_sim_network(args: argparse.Namespace) -> int:
    """Run it, write the report, exit 1 when an agent did not converge."""
    from edgecfg.sim.netns import refusal
    from edgecfg.sim.network import NetworkScenario, run
    from edgecfg.sim.report import write_network_report

    scenario = NetworkScenario(
        agents=args.agents, profile=args.profile, seconds=args.seconds, edits=args.edits,
        group_share=args.group_share, interval_s=args.interval, settle_s=args.settle,
        seed=args.seed,
    )  # fmt: skip
    scenario.check()
    reason = refusal()
    if reason is not None:
        raise CommandError(f"real-network mode cannot run here: {reason}")

    def progress(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    report = run(scenario, progress=progress, keep=args.keep)
    summary = report.summary()
    written = write_network_report(report, args.out)
    print(
        f"{scenario.agents} agent(s), {scenario.profile}, {report.wall_s:.0f} s: "
        f"{summary['syncs']} syncs ({summary['failed_syncs']} gave up), "
        f"{summary['bytes_per_device']:,} B per device, "
        f"{summary['round_trips_per_sync']} round trips per sync; "
        f"divergent devices: {report.divergent}"
    )
    print(f"convergence (edit -> applied), s: {summary['convergence_s']}")
    print(f"gateway CPU: {summary['gateway_cpu_s']} s, {summary['gateway_cpu_per_sync_ms']} ms "
          "per sync (its idle refresh included)")  # fmt: skip
    for path in written:
        print(f"  wrote {path}")
    return 1 if report.divergent else 0
