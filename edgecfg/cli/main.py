"""The ``edgecfg`` command line.

Each subcommand is a small function taking the parsed arguments and returning
an exit code.  Errors from edgecfg become one line on stderr (no traceback)
and exit 1; argument mistakes exit 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import edgecfg
from edgecfg.cli import battery_sim, network_sim, optimize_sim, rollout_sim
from edgecfg.cli.arguments import (
    JSON,
    Declare,
    Handler,
    add_command,
    add_commands,
    argument,
    dispatch,
    number,
)
from edgecfg.cli.database import default_db
from edgecfg.cli.database import register as register_database_commands
from edgecfg.cli.files import dump_config, load_config, load_schema, read_bytes, write_bytes
from edgecfg.cli.operator import register as register_operator_commands
from edgecfg.cli.optimize import register as register_optimize_commands
from edgecfg.cli.roles import register as register_roles
from edgecfg.cli.rollouts import register as register_rollout_commands
from edgecfg.cli.telemetry import register as register_telemetry_commands
from edgecfg.core.tree import Value, is_map
from edgecfg.errors import CommandError, DeltaError, Violation
from edgecfg.wire.cbor import encode, etag
from edgecfg.wire.delta import apply_delta, delta_kind, make_delta
from edgecfg.wire.documents import ConfigFormat, guess_format

DEMO_DESCRIPTION = """\
Runs edgecfg's main job end to end in a throw-away folder, on an embedded
SQLite database, and exits 0 only when every step checked out:
(1) loads the fixture schema and checks its evolution to v2; (2) builds,
validates and stores one config per device type by ETag; (3) keeps a layer's
revision history; (4) shows the delta a sensor fetches for one change;
(5) registers a fleet of 10,000 devices in groups; (6) inheritance, a lock, a
refused edit, explain and a dry run; (7) starts a gateway on loopback UDP,
enrols N agents with OSCORE credentials, syncs them (full configs, then
2.03 Valid), rolls a group change out as deltas, lets a second change ride on
telemetry, and prints bytes and round trips per sync.  Ctrl-C stops it
cleanly (exit 130)."""


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a config against a schema; print each violation; exit 1 when invalid."""
    schema = load_schema(args.schema)
    config = load_config(args.config, args.format)
    if is_map(config):
        violations = schema.validate(config, partial=args.partial)
    else:
        # Any model value encodes, diffs and patches; a schema declares keys,
        # so a list or scalar at the top level is one violation at the root.
        expected = f"a map of the keys declared by schema {schema.name} v{schema.version}"
        violations = [Violation("", config, expected)]
    if args.json:
        rows = [
            {"path": v.path, "value": repr(v.value), "expected": v.expected} for v in violations
        ]
        print(json.dumps({"valid": not violations, "violations": rows}, indent=2))
    elif violations:
        for violation in violations:
            print(f"{args.config}: {violation}")
        print(f"{len(violations)} violation(s) of {schema.name} v{schema.version}")
    else:
        print(f"{args.config}: valid against {schema.name} v{schema.version}")
    return 1 if violations else 0


def cmd_encode(args: argparse.Namespace) -> int:
    """Convert JSON/diag/TOML/YAML (or CBOR) to canonical CBOR or diagnostic notation."""
    value = load_config(args.input, args.source_format)
    dump_config(value, args.output, cast(ConfigFormat, args.to))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode CBOR (raw, or hex text with --hex) strictly into diag or JSON."""
    if args.hex:
        text = read_bytes(args.input).decode("ascii", errors="replace")
        try:
            data = bytes.fromhex("".join(text.split()))
        except ValueError:
            raise CommandError(f"{args.input}: --hex input is not hexadecimal text") from None
        value = edgecfg.decode(data)
    else:
        value = load_config(args.input, "cbor")
    dump_config(value, args.output, cast(ConfigFormat, args.to))
    return 0


def cmd_etag(args: argparse.Namespace) -> int:
    """Print the ETag (hex) and canonical size of a configuration file."""
    value = load_config(args.input, args.format)
    blob = encode(value)
    print(f"{etag(value).hex()}  {len(blob)} bytes  {args.input}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the local walk-through (see edgecfg.cli.demo)."""
    from edgecfg.cli.demo import run_demo

    return run_demo(keep=args.keep, agents=args.agents)


def cmd_sim(args: argparse.Namespace) -> int:
    """Simulate a fleet in virtual time and write the report folder."""
    from edgecfg.sim.report import write_report
    from edgecfg.sim.virtual import Scenario, run

    if args.out is None:
        raise CommandError("--out DIR is required: the folder for summary.json and the plots")

    scenario = Scenario(
        devices=args.devices, days=args.days, seed=args.seed, wake_every_s=args.wake_every,
        writes_per_day=args.writes_per_day, group_share=args.group_share, loss=args.loss,
        prune_versions_days=args.prune_versions,
    )  # fmt: skip
    live = sys.stderr.isatty()

    def progress(done: float) -> None:
        if live:
            filled = int(done * 30)
            sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done:4.0%}")
            sys.stderr.flush()

    report = run(scenario, progress=progress)
    if live:
        sys.stderr.write("\n")
    written = write_report(report, args.out)
    summary = report.summary()
    print(
        f"{scenario.devices:,} devices x {scenario.days:g} days: {report.events:,} events "
        f"in {report.wall_s:.1f} s; divergent devices: {report.divergent}; "
        f"failed syncs: {report.failed_syncs}"
    )
    print(f"convergence (write -> applied): {summary['convergence_s']}")
    for path in written:
        print(f"  wrote {path}")
    return 1 if report.divergent else 0


def cmd_delta(args: argparse.Namespace) -> int:
    """Write the delta that turns OLD into NEW."""
    old, new = _tree(args.old, args.format), _tree(args.new, args.format)
    schema = load_schema(args.schema) if args.schema else None
    classes = set(args.classes.split(",")) if args.classes else None
    if classes is not None and schema is None:
        raise CommandError("--classes needs --schema (priority classes come from the schema)")
    delta = make_delta(old, new, schema=schema, classes=classes)
    write_bytes(args.output, delta)
    if args.output != "-":
        full = len(encode(new))
        print(
            f"{args.output}: {len(delta)} bytes ({delta_kind(delta)}), "
            f"{100 * len(delta) / full:.2f}% of the {full}-byte new config"
        )
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    """Apply DELTA to OLD and write the result."""
    old = _tree(args.old, args.format)
    delta = read_bytes(args.delta)
    try:
        new = apply_delta(old, delta)
    except DeltaError as error:
        raise CommandError(f"{args.delta}: {error}") from None
    fmt = args.to or guess_format(args.output, "json")
    dump_config(new, args.output, fmt if fmt in ("cbor", "diag") else "json")
    return 0


def _tree(name: str, fmt: str | None) -> Value:
    # Any model value at the top level (map, list, scalar), as for encode and etag.
    return load_config(name, fmt)


def cmd_bench_delta(args: argparse.Namespace) -> int:
    """Delta sizes and speed against baselines measured in the same run."""
    from edgecfg.bench.delta import run_delta_bench

    files = [*args.files, *args.corpus]
    if args.synthetic and files:
        raise CommandError("--synthetic and corpus files exclude each other")
    if args.worst < 0 or args.runs < 1 or args.repeat < 1:
        raise CommandError("--worst must be >= 0, --runs and --repeat >= 1")
    return run_delta_bench(
        files, as_json=args.json, leaves=args.leaves, synthetic=args.synthetic,
        worst_count=args.worst, runs=args.runs, repeat=args.repeat,
    )  # fmt: skip


def cmd_bench_resolve(args: argparse.Namespace) -> int:
    """Effective-config resolution of a synthetic fleet against naive recomputation."""
    from edgecfg.bench.resolve import Shape, run_resolve_bench

    shape = Shape(args.devices, args.leaves, args.groups, args.seed)
    return run_resolve_bench(shape, as_json=args.json)


def cmd_bench_sync(args: argparse.Namespace) -> int:
    """Gateway CPU, bytes on the wire and round trips per sync."""
    from edgecfg.bench.sync import run_sync_bench

    return run_sync_bench(
        devices=args.devices, requests=args.requests, concurrency=args.concurrency,
        as_json=args.json,
    )  # fmt: skip


def cmd_bench_agent(args: argparse.Namespace) -> int:
    """Agent heap, local resolution and journal cost."""
    from edgecfg.bench.agent import run_agent_bench

    return run_agent_bench(
        leaves=args.leaves, journal=args.journal, samples=args.samples, as_json=args.json
    )


def cmd_bench_energy(args: argparse.Namespace) -> int:
    """Config-management energy as a share of each battery device's daily budget."""
    from edgecfg.bench.energy import run_energy_bench

    return run_energy_bench(days=args.days, devices=args.devices, seed=args.seed, as_json=args.json)


def cmd_bench_store(args: argparse.Namespace) -> int:
    """Run the device-registry benchmark."""
    from edgecfg.bench.store import run_store_bench

    return run_store_bench(devices=args.devices, seed=args.seed)


def cmd_bench_telemetry(args: argparse.Namespace) -> int:
    """Run the telemetry ingest benchmark."""
    from edgecfg.bench.telemetry import run_telemetry_bench

    return run_telemetry_bench(devices=args.devices, packs=args.packs, burst=args.burst,
                               seed=args.seed, as_json=args.json)  # fmt: skip


def cmd_bench_fleet(args: argparse.Namespace) -> int:
    """Run the realistic-fleet gateway benchmark."""
    from edgecfg.bench.fleet import run_fleet_bench

    return run_fleet_bench(
        devices=args.devices, sample=args.sample, seed=args.seed, idle=args.idle,
        as_json=args.json,
    )  # fmt: skip


def cmd_bench_sim_truth(args: argparse.Namespace) -> int:
    """The virtual sim's gateway CPU per sync against a real gateway process's."""
    from edgecfg.bench.sim_truth import run_sim_truth_bench

    return run_sim_truth_bench(devices=args.devices, edits=args.edits, rounds=args.rounds,
                               seed=args.seed, as_json=args.json)  # fmt: skip


def cmd_bench_multi(args: argparse.Namespace) -> int:
    """One vs two gateways on one PostgreSQL database; SQLite vs PostgreSQL."""
    from edgecfg.bench.multi import DEFAULT_POSTGRES, run_multi_bench

    postgres = args.postgres or DEFAULT_POSTGRES
    return run_multi_bench(
        devices=args.devices, seconds=args.seconds, postgres=postgres, as_json=args.json
    )


def cmd_bench_optimize(args: argparse.Namespace) -> int:
    """Run the optimizer analysis benchmark."""
    from edgecfg.bench.optimize import run_optimize_bench

    return run_optimize_bench(devices=args.devices, days=args.days, seed=args.seed,
                              as_json=args.json)  # fmt: skip


def cmd_bench_oscore(args: argparse.Namespace) -> int:
    """OSCORE cost with 100k enrolled devices against 10, in one run."""
    from edgecfg.bench.oscore import run_oscore_bench

    return run_oscore_bench(devices=args.devices, sample=args.sample, as_json=args.json)


def cmd_bench_flood(args: argparse.Namespace) -> int:
    """Gateway RSS and a device's sync latency under a single-host flood."""
    from edgecfg.bench.flood import print_report, run_flood_bench

    if args.seconds <= 0 or args.rate <= 0 or args.ports <= 0 or min(args.after, args.baseline) < 0:
        raise CommandError(
            "--seconds, --rate and --ports must be above 0, --after and --baseline not below"
        )
    report = run_flood_bench(
        seconds=args.seconds, after=args.after, rate=args.rate, ports=args.ports,
        baseline=args.baseline,
        oscore=args.oscore, unbounded=args.unbounded,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="edgecfg",
        description="Configuration for constrained edge devices over CoAP.",
    )
    parser.add_argument("--version", action="version", version=f"edgecfg {edgecfg.__version__}")
    parser.add_argument(
        "--db",
        default=default_db(),
        metavar="FILE",
        help="gateway database (default: $EDGECFG_DB, else ./edgecfg.db); "
        "may also come after the command",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    formats = ("json", "cbor", "diag", "toml", "yaml")

    add_command(
        commands, "validate", cmd_validate, "check a config against a schema",
        argument("config", metavar="CONFIG"),
        argument("--schema", required=True, metavar="SCHEMA", help="schema document (JSON)"),
        argument("--format", choices=formats, help="config format (default: by suffix)"),
        argument("--partial", action="store_true", help="a layer: missing keys are fine"),
        JSON,
    )  # fmt: skip
    add_command(
        commands, "encode", cmd_encode, "JSON/diag/TOML/YAML -> canonical CBOR (or diag)",
        argument("input", metavar="INPUT", help="file or - for stdin"),
        argument("-o", "--output", default="-", metavar="OUT", help="default: stdout"),
        argument("--from", dest="source_format", choices=formats,
                 help="input format (default: by suffix)"),
        argument("--to", choices=("cbor", "diag", "json"), default="cbor", help="default: cbor"),
    )  # fmt: skip
    add_command(
        commands, "decode", cmd_decode, "CBOR -> diagnostic notation or JSON (strict)",
        argument("input", metavar="INPUT", help="file or - for stdin"),
        argument("-o", "--output", default="-", metavar="OUT", help="default: stdout"),
        argument("--to", choices=("diag", "json", "cbor"), default="diag", help="default: diag"),
        argument("--hex", action="store_true", help="input is hex text (e.g. from coap-client -v)"),
    )  # fmt: skip
    add_command(
        commands, "etag", cmd_etag, "print a config's ETag and canonical size",
        argument("input", metavar="INPUT"),
        argument("--format", choices=formats, help="input format (default: by suffix)"),
    )  # fmt: skip
    add_command(
        commands, "demo", cmd_demo, "the main job end to end on a throw-away SQLite database",
        argument("--keep", action="store_true",
                 help="keep the demo's folder (database, agents' state) and print its path"),
        number("--agents", 50, "agents synced over OSCORE on loopback",
               also="; 0 skips the fleet step"),
        description=DEMO_DESCRIPTION,
    )  # fmt: skip
    sim = add_command(
        commands, "sim", cmd_sim,
        "a fleet in virtual time: the real sync session against the real service layer",
        number("--devices", 1000, "fleet size"),
        number("--days", 7.0, "simulated days"),
        argument("--out", type=Path, metavar="DIR",
                 help="report folder: summary.json and PNG plots (required)"),
        number("--seed", 1, "names one run"),
        number("--wake-every", 86400.0, "seconds between a device's wakes", metavar="S",
               also=", daily"),
        number("--writes-per-day", 10.0, "operator layer edits a day, fleet-wide", metavar="N"),
        number("--group-share", 0.2, "share of edits on group layers", metavar="P"),
        number("--loss", 0.0, "probability that one exchange is lost", metavar="P"),
        argument("--prune-versions", type=float, metavar="DAYS",
                 help="each day, forget served versions older than DAYS, as "
                      "`edgecfg gateway prune` does (default: never)"),
    )  # fmt: skip
    scenarios = sim.add_subparsers(dest="sim_command", metavar="SCENARIO-COMMAND")
    rollout_sim.add_parser(scenarios)
    battery_sim.add_parser(scenarios)
    optimize_sim.add_parser(scenarios)
    network_sim.add_parser(scenarios)
    add_command(
        commands, "delta", cmd_delta, "make the delta that turns OLD into NEW",
        argument("old", metavar="OLD"),
        argument("new", metavar="NEW"),
        argument("-o", "--output", required=True, metavar="OUT", help="delta file (- for stdout)"),
        argument("--format", choices=formats, help="format of OLD and NEW (default: by suffix)"),
        argument("--schema", metavar="SCHEMA", help="schema (needed for --classes)"),
        argument("--classes", metavar="C[,C]", help="only these priority classes, e.g. critical"),
    )  # fmt: skip
    add_command(
        commands, "patch", cmd_patch, "apply a delta to OLD",
        argument("old", metavar="OLD"),
        argument("delta", metavar="DELTA"),
        argument("-o", "--output", required=True, metavar="OUT",
                 help="result (- for stdout)"),
        argument("--format", choices=formats, help="format of OLD (default: by suffix)"),
        argument("--to", choices=("json", "cbor", "diag"),
                 help="result format (default: by suffix)"),
    )  # fmt: skip

    register_database_commands(commands)
    register_operator_commands(commands, formats)
    register_rollout_commands(commands)
    register_telemetry_commands(commands)
    register_optimize_commands(commands)
    register_roles(commands)
    _register_benches(commands)
    return parser


def _register_benches(commands: Any) -> None:
    """``edgecfg bench NAME``: each benchmark with its same-run baselines."""
    bench = commands.add_parser("bench", help="benchmarks with same-run baselines")
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    table: tuple[tuple[str, Handler, str], ...] = (
        ("delta", cmd_bench_delta, "delta size and speed vs JSON Patch, zstd, lz4"),
        ("sync", cmd_bench_sync, "gateway CPU, wire bytes and round trips per sync"),
        ("agent", cmd_bench_agent, "agent heap, local resolution, journal cost"),
        ("energy", cmd_bench_energy,
         "config-management energy as %% of each battery device's daily budget"),
        ("oscore", cmd_bench_oscore, "OSCORE start-up, RSS, per-request cost at 100k devices"),
        ("resolve", cmd_bench_resolve, "fleet resolution, impact and memory vs naive folds"),
        ("store", cmd_bench_store, "device registry reads and group queries at fleet scale"),
        ("flood", cmd_bench_flood,
         "gateway RSS and a device's sync latency under a single-host flood"),
        ("fleet", cmd_bench_fleet, "gateway start-up, memory, CPU and latency on realistic fleets"),
        ("telemetry", cmd_bench_telemetry, "telemetry ingest per pack, 1k vs 100k devices; bursts"),
        ("multi", cmd_bench_multi,
         "1 vs 2 gateway processes on one PostgreSQL, and SQLite vs PostgreSQL"),
        ("optimize", cmd_bench_optimize, "optimizer analysis of 100k devices x 30 days"),
        ("sim-truth", cmd_bench_sim_truth,
         "the virtual sim's gateway CPU per sync vs a real gateway process on the same mix"),
    )  # fmt: skip
    corpus = "../shared/corpus"
    options: tuple[tuple[str, Declare], ...] = (
        ("delta", argument("files", nargs="*", metavar="FILE.jsonl", help=f"default: {corpus}")),
        ("delta", argument("--corpus", action="append", default=[], metavar="DIR",
                           help=f"a directory of *.jsonl histories (or one file) in {corpus}'s "
                           f"format (repeatable; default: {corpus})")),
        ("delta", number("--worst", 0, "print the N largest deltas, op mix too", metavar="N",
                         also=", none")),
        ("delta", number("--leaves", 2000, "config size for the speed run")),
        ("delta", number("--runs", 200, "edits timed in the speed run")),
        ("delta", number("--repeat", 3, "speed runs; each call's figure is its least time")),
        ("delta", argument("--synthetic", action="store_true",
                           help="use the generator, not the corpus")),
        ("sync", number("--devices", 200, "fleet size")),
        ("sync", number("--requests", 8000, "requests per case")),
        ("sync", number("--concurrency", 32, "requests in flight")),
        ("agent", number("--leaves", 2000, "config size")),
        ("agent", number("--journal", 1000, "pending local changes")),
        ("agent", number("--samples", 2000, "timed repetitions")),
        ("energy", number("--days", 14.0, "simulated days")),
        ("energy", number("--devices", 2, "devices per device type, pattern and sync mode")),
        ("energy", number("--seed", 1, "random seed (wake phases, edit times)")),
        ("oscore", number("--devices", 100_000, "enrolled devices")),
        ("oscore", number("--sample", 2000, "devices sending requests")),
        ("resolve", number("--devices", 100_000, "fleet size")),
        ("resolve", number("--leaves", 2000, "schema keys")),
        ("resolve", number("--groups", 200, "group nodes, about")),
        ("resolve", number("--seed", 7, "names one synthetic fleet")),
        ("store", number("--devices", 100_000, "fleet size")),
        ("store", number("--seed", 1, "random seed")),
        ("flood", number("--seconds", 300.0, "length of the flood")),
        ("flood", number("--after", 60.0, "seconds measured after the flood")),
        ("flood", number("--baseline", 10.0, "seconds measured before the flood")),
        ("flood", number("--rate", 3900.0, "datagrams/s")),
        ("flood", number("--ports", 4000, "source ports")),
        ("flood", argument("--oscore", action="store_true", help="OSCORE gateway, enrolled "
                           "device, unauthenticated flood (default: plain CoAP)")),
        ("flood", argument("--unbounded", action="store_true", help="run the gateway without "
                           "budgets, for comparison (default: budgets on)")),
        ("fleet", argument("--devices", default="1000,10000,100000",
                           help="fleet sizes, comma-separated (default: 1000,10000,100000)")),
        ("fleet", number("--sample", 4000, "devices the load driver plays")),
        ("fleet", number("--seed", 1, "random seed")),
        ("fleet", number("--idle", 10.0, "seconds the idle gateway's CPU is read over")),
        ("telemetry", number("--devices", 100_000, "fleet size")),
        ("telemetry", number("--packs", 3000, "packs ingested one per transaction")),
        ("telemetry", number("--burst", 20_000, "packs of the burst, ingested in batches")),
        ("telemetry", number("--seed", 1, "random seed")),
        ("multi", number("--devices", 2000, "fleet size")),
        ("multi", number("--seconds", 8.0, "seconds measured per case, after a 2 s warm-up")),
        ("multi", argument("--postgres", default=None, metavar="URL",
                           help="the PostgreSQL server (default: $EDGECFG_TEST_POSTGRES, else "
                           "postgresql://postgres@127.0.0.1:5432/test); a schema of its own, "
                           "dropped after")),
        ("optimize", number("--devices", 100_000, "fleet size")),
        ("optimize", number("--days", 30, "days of daily aggregates")),
        ("optimize", number("--seed", 1, "random seed")),
        ("sim-truth", number("--devices", 400, "fleet size")),
        ("sim-truth", number("--edits", 8, "layer edits between the full and the delta phase")),
        ("sim-truth", number("--rounds", 5, "rounds of every device current (2.03)")),
        ("sim-truth", number("--seed", 1, "random seed")),
        ("sim-truth", JSON),
        # and --json, last in the help of each bench that prints JSON
        ("multi", JSON),
        ("delta", JSON),
        ("sync", JSON),
        ("agent", JSON),
        ("energy", JSON),
        ("oscore", JSON),
        ("resolve", JSON),
        ("flood", JSON),
        ("telemetry", JSON),
        ("optimize", JSON),
        ("fleet", argument("--json", action="store_true", help="one JSON object per fleet size")),
    )  # fmt: skip
    add_commands(benches, table, options)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn edgecfg errors into one line on stderr."""
    args = build_parser().parse_args(argv)
    return dispatch(args, f"edgecfg {args.command}")


if __name__ == "__main__":
    sys.exit(main())
