"""``edgecfg device show`` and ``edgecfg device retry``: where a device stands,
and the configuration versions it reverted (issue 15).

``show`` prints the device's registry facts, the version it is served and
the one it last reported applied, and each version it tried and reverted
(held back from it while the mark holds).  ``retry`` clears marks, so the
gateway offers that version again: the operator's way to say "try again"
(a newer effective configuration needs no retry).
"""

from __future__ import annotations

import argparse
from typing import Any

from edgecfg.cli.database import add_db_option, open_fleet
from edgecfg.cli.files import print_json
from edgecfg.core.ids import DeviceId, ETag
from edgecfg.errors import CommandError, show_value
from edgecfg.fleet.adaptation import reported_adaptation
from edgecfg.fleet.sync import SyncService
from edgecfg.store import BadVersion


def _mark_json(mark: BadVersion) -> dict[str, object]:
    return {
        "etag": mark.etag.hex(),
        "reverted_to": mark.reverted_to.hex(),
        "reason": mark.reason,
        "detail": mark.detail,
        "marked_at": mark.marked_at,
    }


def cmd_device_show(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        device = DeviceId(args.id)
        record = fleet.store.get_device(device)
        effective = fleet.etag(device)
        served = SyncService(fleet).served_etag(device, held=record.applied_etag)
        marks = fleet.store.bad_versions(device)
        adapted = reported_adaptation(fleet.store, device)  # the device's own rules (issue 14)
        values = adapted.adaptation.values if adapted is not None else ()
        status: dict[str, object] = {
            "device": device,
            "groups": dict(record.groups),
            "hardware": record.hardware,
            "firmware": record.firmware,
            "agent_version": record.agent_version,
            "last_seen": record.last_seen,
            "applied_etag": record.applied_etag.hex() if record.applied_etag else None,
            "effective_etag": effective.hex(),
            "served_etag": served.hex(),
            "reverted": [_mark_json(mark) for mark in marks],
            "adapted": {a.dotted: {"value": a.value, "rule": a.rule} for a in values},
        }
    if args.json:
        print_json(status)
        return 0
    for key, value in status.items():
        if key not in ("reverted", "adapted"):
            print(f"{key:>14}: {'(not reported yet)' if value is None else value}")
    if served != effective:
        print(f"{'':>14}  held back: the device reverted {effective.hex()}")
    for mark in marks:
        print(
            f"{'reverted':>14}: {mark.etag.hex()} -> {mark.reverted_to.hex()} "
            f"({mark.reason}: {mark.detail or 'no detail'})"
        )
    for adapted_value in values:  # what the device runs on instead of the served value
        print(
            f"{'adapted':>14}: {adapted_value.dotted} = {show_value(adapted_value.value)} "
            f"(rule {adapted_value.rule}, on the device; see explain)"
        )
    return 0


def cmd_device_retry(args: argparse.Namespace) -> int:
    device = DeviceId(args.id)
    etag: ETag | None = None
    if args.etag is not None:
        try:
            etag = ETag(bytes.fromhex(args.etag))
        except ValueError:
            etag = None
        if etag is None or len(etag) != 8:
            raise CommandError(f"--etag {args.etag!r}: the 16 hex digits of a version's ETag")
    with open_fleet(args) as fleet:
        fleet.store.get_device(device)  # NotFound names an unknown device
        cleared = fleet.clear_marks(device, etag)
    if cleared == 0:
        which = f"version {args.etag}" if etag is not None else "any version"
        raise CommandError(f"{device}: no revert of {which} is recorded")
    print(f"{device}: {cleared} reverted version(s) will be offered again")
    return 0


def register_device_status(device: Any) -> None:
    """``device show`` and ``device retry`` under the existing ``device`` command."""
    q = device.add_parser("show", help="a device's versions, and those it reverted")
    q.add_argument("id", metavar="ID")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    add_db_option(q)
    q.set_defaults(handler=cmd_device_show)
    q = device.add_parser("retry", help="offer versions a device reverted again")
    q.add_argument("id", metavar="ID")
    q.add_argument("--etag", metavar="HEX", help="only this version (default: every one)")
    add_db_option(q)
    q.set_defaults(handler=cmd_device_retry)
