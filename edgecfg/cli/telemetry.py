"""``edgecfg telemetry ...``: network quality per device or group, and the
devices worst by a metric (issue 14).

``show DEV|GROUP`` prints the link quality (RSRP/RSRQ/SINR: count, min,
mean, max, last, and the RSRP/SINR histogram), coverage class,
retransmissions, sync success rate, battery, and the degradation test's
verdict with when the change point was found; a group is ``dimension/path``
(``region/eu``) and lists its devices flagged since ``--since``.
``top --by METRIC`` ranks devices: counters and counts by their sum, gauges
by their mean, lowest first where low is worse (battery, RSRP, SINR).
``prune`` drops raw packs past retention for devices that stopped reporting
(ingest prunes the devices it sees).
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import time
from typing import Any, cast

from edgecfg.cli.arguments import JSON, add_actions, add_command, argument, number
from edgecfg.cli.database import add_db_option, open_store
from edgecfg.core.telemetry import DAY, REGISTRY
from edgecfg.errors import CommandError
from edgecfg.fleet.telemetry import DEFAULT_RETENTION_S, TelemetryService

DEFAULT_SINCE = "7d"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_since(text: str, *, now: float) -> float:
    """``7d``, ``36h``, ``90m`` (before ``now``), an ISO date or UTC time
    (``2026-12-01``, ``2026-12-01T06:00Z``), or seconds since the epoch."""
    relative = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if relative:
        return now - float(relative.group(1)) * _UNITS[relative.group(2)]
    for form in ("%Y-%m-%d", "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return float(calendar.timegm(time.strptime(text, form)))
        except ValueError:
            continue
    try:
        return float(text)
    except ValueError:
        raise CommandError(
            f"--since {text}: expected an age (7d, 36h, 90m), a UTC date or time "
            "(2026-12-01, 2026-12-01T06:00Z) or epoch seconds"
        ) from None


def stamp(at: float | None) -> str:
    """A UTC time as the CLI prints it."""
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(at))


def cmd_telemetry_show(args: argparse.Namespace) -> int:
    since = parse_since(args.since, now=time.time())
    with open_store(args) as store:
        summary = TelemetryService(store).view(args.target, since=since).summary()
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"{summary['target']} ({summary['kind']}), since {stamp(summary['since'])}")
    link = cast(dict[str, dict[str, float]], summary["link"])
    if not link:
        print("  link: no RSRP, RSRQ or SINR readings")
    for name, s in link.items():
        unit = REGISTRY[name].unit
        print(f"  {name}: mean {s['mean']:.1f} {unit} (min {s['min']:g}, max {s['max']:g}, "
              f"last {s['last']:g}; {s['count']} reading(s))")  # fmt: skip
    bands = cast(dict[str, int], summary["distribution"])
    if bands:
        print("  distribution: " + ", ".join(f"{name} {n}" for name, n in bands.items()))
    coverage = summary["coverage_class"]
    if coverage is not None:
        print(f"  coverage class: CE{coverage['last']:g} last, CE{coverage['max']:g} worst")
    trips, retrans = summary["round_trips"], summary["retransmissions"]
    share = summary["retransmissions_per_round_trip"]
    shown = "" if share is None else f" ({share:.1%} of round trips)"
    print(f"  retransmissions: {retrans:g} in {trips:g} round trip(s){shown}")
    rate = summary["sync_success_rate"]
    print(f"  syncs: {summary['syncs']:g}" + ("" if rate is None else f", {rate:.1%} succeeded"))
    for name, s in cast(dict[str, dict[str, float]], summary["battery"]).items():
        unit = REGISTRY[name].unit
        print(f"  {name}: {s['last']:g} {unit} last (min {s['min']:g})")
    degraded = cast(dict[str, Any], summary["degraded"])
    if summary["kind"] == "group":
        listed = ", ".join(degraded["devices"]) or "none"
        print(f"  degraded links: {degraded['count']} device(s): {listed}")
        return
    for name, verdict in degraded.items():
        if verdict["degraded"]:
            changed, found = stamp(verdict["changed_at"]), stamp(verdict["flagged_at"])
            print(f"  {name} DEGRADED: changed at {changed}, found at {found}, "
                  f"from a mean of {verdict['before']:.1f}")  # fmt: skip
        else:
            print(f"  {name}: no degradation found")


def cmd_telemetry_top(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError(f"--limit {args.limit}: expected 1 or more")
    since = parse_since(args.since, now=time.time())
    with open_store(args) as store:
        ranked = TelemetryService(store).top(args.by, since=since, limit=args.limit)
    if args.json:
        print(json.dumps([{"device": d, args.by: v} for d, v in ranked], indent=2))
        return 0
    if not ranked:
        print(f"no device reported {args.by} since {stamp(since)}")
    for device, value in ranked:
        print(f"{device:<24} {value:g}")
    return 0


def cmd_telemetry_prune(args: argparse.Namespace) -> int:
    if args.older_than < 0:
        raise CommandError(f"--older-than {args.older_than}: days, 0 or more")
    with open_store(args) as store:
        service = TelemetryService(store, retention_s=args.older_than * DAY)
        dropped = service.prune(now=time.time())
    print(f"dropped {dropped} telemetry pack(s) older than {args.older_than:g} day(s)")
    return 0


def register(commands: Any) -> None:
    """``edgecfg telemetry ...``."""
    telemetry = add_actions(commands, "telemetry", "network quality and telemetry aggregates")
    since = argument("--since", default=DEFAULT_SINCE, metavar="WHEN",
                     help=f"7d, 36h, a UTC date or time (default: {DEFAULT_SINCE})")  # fmt: skip
    for name, handler, text, *declared in (
        ("show", cmd_telemetry_show, "link quality, coverage, syncs, battery, degradation",
         argument("target", metavar="DEV|GROUP", help="a device id or dimension/path"), since,
         JSON),
        ("top", cmd_telemetry_top, "the devices worst by a metric",
         argument("--by", required=True, metavar="METRIC",
                  help=f"a series name ({', '.join(sorted(REGISTRY))}, link_degraded, ...)"),
         number("--limit", 10, "devices listed", metavar="N"), since, JSON),
        ("prune", cmd_telemetry_prune, "drop raw packs past retention",
         number("--older-than", DEFAULT_RETENTION_S / DAY, "retention in days",
                metavar="DAYS")),
    ):  # fmt: skip
        add_db_option(add_command(telemetry, name, handler, text, *declared))
