"""Operator commands on the gateway database: schema, groups, devices, config,
explain, impact and history.

Every read command takes ``--json``.  The database is ``--db FILE`` (before or
after the command), else ``$EDGECFG_DB``, else ``./edgecfg.db``; only ``init``
and ``--create`` make a new one (:mod:`edgecfg.cli.database`).  Values on the
command line parse as JSON when they can (``60``, ``true``, ``"x"``, ``[1,2]``),
else as text.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import getpass
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from edgecfg.cli.adapt import adaptation_json, utc
from edgecfg.cli.arguments import JSON, Declare, add_actions, add_command, argument
from edgecfg.cli.database import add_db_option, open_fleet, shown
from edgecfg.cli.device_status import register_device_status
from edgecfg.cli.files import jsonable, print_json, read_bytes, write_bytes
from edgecfg.cli.security import add_device_actions
from edgecfg.cli.security import register as register_security
from edgecfg.core.ids import DEVICE_ID_RULE, DeviceId, LayerId, check_device_id
from edgecfg.core.layers import (
    Hierarchy,
    Layer,
    device_layer,
    hierarchy_from_text,
    layer_from_document,
    layer_from_parts,
    layer_to_document,
)
from edgecfg.core.path import Path, format_path, parse_path
from edgecfg.core.resolve import Explanation
from edgecfg.core.rules import describe as describe_adapted
from edgecfg.core.tree import UNSET, UnsetType, Value, check_model, is_map
from edgecfg.errors import CommandError, EdgecfgError, NotFound
from edgecfg.fleet.adaptation import ReportedAdaptation, reported_adaptation
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.impact import Impact, schema_refusals
from edgecfg.fleet.reconcile import describe, last_outcome
from edgecfg.store import DeviceRecord, LayerRevision
from edgecfg.wire.cbor import Encoded
from edgecfg.wire.delta import make_delta
from edgecfg.wire.documents import guess_format, parse_text_document, write_config


def parse_value(text: str) -> Value:
    """JSON when it parses, else the text itself."""
    try:
        return check_model(json.loads(text))
    except (ValueError, EdgecfgError):
        return text


def parse_assignment(text: str) -> tuple[Path, Value]:
    """``PATH=VALUE`` -> (path, value)."""
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise CommandError(f"{text!r}: expected PATH=VALUE, e.g. net.uplink.interval_s=600")
    return parse_path(path.strip()), parse_value(value)


def _author(args: argparse.Namespace) -> str:
    if args.author:
        return str(args.author)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


def _edit_from_args(args: argparse.Namespace) -> Layer:
    parts: list[Layer] = []
    if getattr(args, "file", None):
        parts.append(_layer_file(args.file))
    sets = dict(parse_assignment(item) for item in _strings(args, "set"))
    unsets = [parse_path(item) for item in _strings(args, "unset")]
    locks = [parse_path(item) for item in _strings(args, "lock")]
    parts.append(layer_from_parts(sets=sets, unsets=unsets, locks=locks))
    edit = parts[0]
    for part in parts[1:]:
        edit = edit.merged(part)
    return edit


def _strings(args: argparse.Namespace, name: str) -> list[str]:
    """A repeatable option's values (an absent option is an empty list)."""
    values: list[str] | None = getattr(args, name, None)
    return list(values or [])


def _layer_file(name: str) -> Layer:
    document = parse_text_document(read_bytes(name), _text_format(name), source=name)
    if not is_map(document):
        raise CommandError(f"{name}: a layer file must be a map")
    try:
        if document and set(document) <= {"set", "unset", "lock"}:
            return layer_from_document(check_model(document))
        return layer_from_parts(document)  # a plain partial tree
    except EdgecfgError as error:
        raise CommandError(f"{name}: {error}") from None


def _text_format(name: str) -> Any:
    fmt = guess_format(name)
    return fmt if fmt in ("json", "toml", "yaml") else "json"


def _show(value: Value | UnsetType) -> str:
    if value is UNSET:
        return "(unset)"
    return json.dumps(value, ensure_ascii=False, default=jsonable)


SAMPLE_GROUPS = 8

# ---------------------------------------------------------------- commands


def cmd_schema_load(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        fmt = _text_format(args.file)
        schema = fleet.load_schema(read_bytes(args.file), fmt, source=args.file, now=time.time())
        print(
            f"{shown(args.db)}: schema {schema.name} v{schema.version} loaded ({len(schema)} keys)"
        )
    return 0


def cmd_fleet_dimensions(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        if args.ranks:
            fleet.set_hierarchy(hierarchy_from_text(args.ranks))
        ranks = [list(rank) for rank in fleet.hierarchy.ranks]
        if args.json:
            print_json({"ranks": ranks})
        else:
            print(f"precedence, lowest first: global < {hierarchy_text(fleet.hierarchy)} < device")
    return 0


def cmd_group_set(args: argparse.Namespace) -> int:
    layer_id = LayerId(args.layer)
    edit = _edit_from_args(args)
    unlock = [parse_path(item) for item in _strings(args, "unlock")]
    if edit.empty and not unlock:
        raise CommandError("nothing to change: give --file, --set, --unset, --lock or --unlock")
    with open_fleet(args) as fleet:
        if fleet.hierarchy.parse(layer_id).kind == "device":
            raise CommandError(f"{layer_id}: use 'edgecfg device set' for a device's overrides")
        revision, impact = fleet.write_layer(
            layer_id,
            edit,
            author=_author(args),
            message=args.message or "",
            now=time.time(),
            unlock=unlock,
        )
        _report_write(revision, impact, as_json=args.json)
    return 0


def _report_write(revision: LayerRevision, impact: Impact, *, as_json: bool) -> None:
    if as_json:
        print_json({"revision": _revision_json(revision), "impact": _impact_json(impact)})
        return
    print(
        f"{revision.layer} r{revision.revision}: {impact.changed:,} of {impact.reached:,} "
        f"device(s) change" + (f", e.g. {', '.join(impact.sample)}" if impact.sample else "")
    )
    if impact.locks_shadowing:
        print(f"  new locks now block {impact.locks_shadowing:,} override(s) above this layer")


def _groups_from_args(args: argparse.Namespace) -> dict[str, str]:
    groups: dict[str, str] = {}
    for item in _strings(args, "group"):
        dimension, sep, path = item.partition("=")
        if not sep or not dimension or not path:
            raise CommandError(f"--group {item!r}: expected DIMENSION=PATH, e.g. region=eu/eu-west")
        groups[dimension] = path
    return groups


def _memberships(record: DeviceRecord) -> str:
    groups = ", ".join(f"{dimension}={path}" for dimension, path in sorted(record.groups.items()))
    parts = [f"groups {groups or '(none)'}"]
    parts.extend(
        f"{name} {value}"
        for name, value in (
            ("hardware", record.hardware),
            ("firmware", record.firmware),
            ("agent version", record.agent_version),
        )
        if value is not None
    )
    return "; ".join(parts)


def cmd_device_add(args: argparse.Namespace) -> int:
    device = check_device_id(args.id)
    record = DeviceRecord(
        id=device,
        groups=_groups_from_args(args),
        hardware=args.hardware,
        firmware=args.firmware,
        agent_version=args.agent_version,
    )
    with open_fleet(args) as fleet:
        if fleet.store.has_device(device):
            current = fleet.store.get_device(device)
            raise CommandError(
                f"{device}: already registered ({_memberships(current)}); change it with "
                f"'edgecfg device set {device} --group DIMENSION=PATH --hardware H ...'"
            )
        _register(fleet, record, "registered")
    return 0


def _register(fleet: Fleet, record: DeviceRecord, verb: str) -> None:
    _resolution, pending = fleet.add_device(record)
    print(f"{record.id}: {verb}; ETag {fleet.etag(record.id).hex()}")
    for violation in pending:
        print(f"  pending: {violation} (set it with 'edgecfg device set {record.id} ...')")


def cmd_device_set(args: argparse.Namespace) -> int:
    edit = _edit_from_args(args)
    groups = _groups_from_args(args)
    facts = {
        name: getattr(args, name)
        for name in ("hardware", "firmware", "agent_version")
        if getattr(args, name) is not None
    }
    if edit.empty and not groups and not facts:
        raise CommandError(
            "nothing to change: give PATH=VALUE, --unset, --lock, --group, --hardware, "
            "--firmware or --agent-version"
        )
    with open_fleet(args) as fleet:
        device = DeviceId(args.id)
        current = fleet.store.get_device(device)
        if groups or facts:
            record = dataclasses.replace(current, groups={**current.groups, **groups}, **facts)
            if record != current:
                _register(fleet, record, f"now {_memberships(record)}")
            else:
                print(f"{device}: memberships unchanged ({_memberships(current)})")
        if not edit.empty:
            revision, impact = fleet.write_layer(
                device_layer(args.id),
                edit,
                author=_author(args),
                message=args.message or "",
                now=time.time(),
            )
            _report_write(revision, impact, as_json=args.json)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    with open_fleet(args) as fleet:
        device = DeviceId(args.id)
        config = fleet.encoded(device)
        if args.summary:
            record = fleet.store.get_device(device)
            summary: dict[str, object] = {
                "device": device,
                "etag": config.etag.hex(),
                "bytes": len(config.cbor),
                "applied_etag": record.applied_etag.hex() if record.applied_etag else None,
                "next_sync": _next_sync(fleet, record, config),
            }
            if args.json:
                print_json(summary)
            else:
                for key, value in summary.items():
                    print(f"{key:>13}: {'(not reported yet)' if value is None else value}")
            return 0
        fmt = "json" if args.json else args.format
        write_bytes("-", write_config(config.tree, fmt))
    return 0


def _next_sync(fleet: Fleet, record: DeviceRecord, config: Encoded) -> str:
    if record.applied_etag is None:
        return f"full config, {len(config.cbor)} bytes (device has not reported)"
    if record.applied_etag == config.etag:
        return "nothing: 2.03 Valid (device is current)"
    try:
        applied = fleet.store.get_blob(record.applied_etag)
    except NotFound:
        return f"full config, {len(config.cbor)} bytes (applied version unknown to the gateway)"
    delta = make_delta(Encoded.from_bytes(applied), config)
    return f"delta of {len(delta)} bytes (full config {len(config.cbor)} bytes)"


def cmd_explain(args: argparse.Namespace) -> int:
    path = parse_path(args.path) if args.path else ()
    with open_fleet(args) as fleet:
        device = DeviceId(args.id)
        explanations = fleet.explain(device, path)
        if not explanations:
            raise CommandError(f"{args.id}: nothing at {args.path or 'any path'}")
        adapted = reported_adaptation(fleet.store, device)  # the device's rules (issue 14)
        if args.json:
            rows = [_explanation_json(fleet, e) for e in explanations]
            for row, explanation in zip(rows, explanations, strict=True):
                found = adapted.adaptation.at(explanation.path) if adapted else None
                if adapted is not None and found is not None:
                    row["adaptation"] = adaptation_json(found, adapted.reported_at)
            print_json(rows)
            return 0
        for explanation in explanations:
            _print_explanation(fleet, explanation)
        outcome = last_outcome(fleet, device)  # the device's offline changes, as merged
        paths = [e.path for e in explanations]
        for line in describe(outcome, paths) if outcome is not None else []:
            print(f"    {line}")
        for line in _adaptation_lines(adapted, paths) if adapted is not None else []:
            print(f"    {line}")
    return 0


def _adaptation_lines(reported: ReportedAdaptation, paths: Sequence[Path]) -> list[str]:
    """What the device's own rules did at ``paths``, as its last report said."""
    values, refused = reported.at(paths)
    told = f"reported {utc(reported.reported_at)}"
    lines = [
        f"on the device: {format_path(a.path)} = {_show(a.value)} by local adaptation "
        f"since {utc(a.since)}: {describe_adapted(a)} ({told})"
        for a in values
    ]
    lines += [
        f"on the device: rule {r.rule} did not adapt {format_path(r.path)}: {r.reason} ({told})"
        for r in refused
    ]
    return lines


def _print_explanation(fleet: Fleet, explanation: Explanation) -> None:
    dotted = format_path(explanation.path)
    if explanation.source:
        origin = _origin(fleet, explanation.source)
    else:
        origin = "dropped for this device" if explanation.dropped else "nothing sets it"
    print(f"{dotted} = {_show(explanation.value)}   ({origin})")
    for step in explanation.steps:
        label = _origin(fleet, step.layer, short=True)
        where = "" if step.touched == explanation.path else f" at {format_path(step.touched)}"
        note = f": {step.note}" if step.note else ""
        print(f"    {label:<28} {_show(step.effect):<24} {step.status}{where}{note}")
    for lock, holder in explanation.locks:
        print(f"    lock on {format_path(lock)} held by {holder}")
    if explanation.dropped:
        print(f"    dropped for this device: {explanation.dropped}")


def _origin(fleet: Fleet, layer: LayerId, *, short: bool = False) -> str:
    head = fleet.head(layer) if layer not in ("defaults", "schema") else None
    if head is None:
        return str(layer)
    if short:
        return f"{layer} r{head.revision}"
    when = datetime.fromtimestamp(head.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    message = f': "{head.message}"' if head.message else ""
    return f"from {layer} r{head.revision} by {head.author} at {when}Z{message}"


def _explanation_json(fleet: Fleet, explanation: Explanation) -> dict[str, object]:
    head = fleet.head(explanation.source) if explanation.source else None
    return {
        "path": format_path(explanation.path),
        "value": explanation.value,
        "source": explanation.source,
        "revision": _revision_json(head) if head else None,
        "steps": [
            {
                "layer": step.layer,
                "path": format_path(step.touched),
                "value": step.effect,
                "status": step.status,
                "note": step.note,
            }
            for step in explanation.steps
        ],
        "locks": [{"path": format_path(p), "holder": h} for p, h in explanation.locks],
        "dropped": explanation.dropped,
    }


def cmd_impact(args: argparse.Namespace) -> int:
    layer_id = LayerId(args.layer)
    with open_fleet(args) as fleet:
        edit = _edit_from_args(args)
        new = fleet.layer(layer_id).merged(edit)
        impact = fleet.impact(layer_id, new)
        refused_by_schema = schema_refusals(fleet.schema, layer_id, new)
        refused = bool(refused_by_schema or impact.violations or impact.blocked or impact.conflicts)
        if args.json:
            print_json({**_impact_json(impact), "refused": refused, "schema": refused_by_schema})
            return 1 if refused else 0
        print(
            f"{layer_id}: reaches {impact.reached:,} device(s); {impact.changed:,} would change"
            + (f", e.g. {', '.join(impact.sample)}" if impact.sample else "")
        )
        for change in impact.changes:
            print(
                f"  {format_path(change.path)}: {_show(change.before)} -> {_show(change.after)} "
                f"on {change.devices:,} device(s), e.g. {change.example}"
            )
        for violation, count, example, via in impact.violations:
            print(
                f"  REFUSED: {count:,} device(s) would violate {violation}, "
                f"e.g. {example} via {via}"
            )
        for touched, lock, holder, count, example in impact.blocked:
            print(
                f"  REFUSED: {format_path(touched)} locked by {holder} at {format_path(lock)} "
                f"for {count:,} device(s), e.g. {example}"
            )
        for path, tied, count, example in impact.conflicts:
            print(
                f"  REFUSED: {', '.join(tied)} would disagree on {format_path(path)} for "
                f"{count:,} device(s), e.g. {example}"
            )
        for refusal in refused_by_schema:
            print(f"  REFUSED: {refusal}")
    return 1 if refused else 0


def _impact_json(impact: Impact) -> dict[str, object]:
    return {
        "layer": impact.layer,
        "reached": impact.reached,
        "changed": impact.changed,
        "sample": list(impact.sample),
        "changes": [
            {
                "path": format_path(c.path),
                "devices": c.devices,
                "example": c.example,
                "before": c.before,
                "after": c.after,
            }
            for c in impact.changes
        ],
        "violations": [
            {
                "path": v.path,
                "expected": v.expected,
                "value": v.value,
                "devices": n,
                "example": e,
                "via": via,
            }
            for v, n, e, via in impact.violations
        ],
        "blocked": [
            {
                "path": format_path(t),
                "lock": format_path(lock),
                "holder": h,
                "devices": n,
                "example": e,
            }
            for t, lock, h, n, e in impact.blocked
        ],
        "conflicts": [
            {"path": format_path(p), "layers": list(tied), "devices": n, "example": e}
            for p, tied, n, e in impact.conflicts
        ],
        "locks_shadowing": impact.locks_shadowing,
    }


def cmd_history(args: argparse.Namespace) -> int:
    layer_id = LayerId(args.target) if args.kind == "group" else device_layer(args.target)
    with open_fleet(args) as fleet:
        revisions = fleet.history(layer_id)
        if not revisions:
            _check_known(fleet, layer_id)
        if args.json:
            print_json([_revision_json(r) for r in revisions])
            return 0
        if not revisions:
            print(f"{layer_id}: no revisions")
        for revision in revisions:
            when = datetime.fromtimestamp(revision.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            message = f"  {revision.message}" if revision.message else ""
            print(
                f"{layer_id} r{revision.revision}  {when}Z  {revision.author:<12} "
                f"{revision.content.hex()}{message}"
            )
    return 0


def _check_known(fleet: Fleet, layer_id: LayerId) -> None:
    """Refuse a layer that names nothing in the fleet (a typo, most likely)."""
    if fleet.group_known(layer_id):
        return
    name = fleet.hierarchy.parse(layer_id)
    if name.kind in ("device", "local"):
        raise CommandError(f"{layer_id}: no such device ('edgecfg device add {name.device}')")
    known = fleet.known_groups(name.dimension)
    shown = ", ".join(f"{name.dimension}/{group}" for group in known[:SAMPLE_GROUPS])
    more = f" and {len(known) - SAMPLE_GROUPS} more" if len(known) > SAMPLE_GROUPS else ""
    raise CommandError(
        f"{layer_id}: no such group (no revisions, no member devices); "
        + (
            f"known {name.dimension} groups: {shown}{more}"
            if known
            else f"no {name.dimension} groups yet"
        )
    )


def _revision_json(revision: LayerRevision) -> dict[str, object]:
    return {
        "layer": revision.layer,
        "revision": revision.revision,
        "parent": revision.parent,
        "content": revision.content.hex(),
        "author": revision.author,
        "message": revision.message,
        "time": revision.created_at,
    }


def cmd_group_show(args: argparse.Namespace) -> int:
    layer_id = LayerId(args.layer)
    with open_fleet(args) as fleet:
        _check_known(fleet, layer_id)
        document = layer_to_document(fleet.layer(layer_id))
        if args.json:
            print_json(document)
        else:
            sys.stdout.write(write_config(document, "json").decode())
    return 0


# ---------------------------------------------------------------- parser


def register(commands: Any, formats: Sequence[str]) -> None:
    """Add the operator commands to the top-level parser's subcommands."""
    del formats

    def edit_options(*, assignments: bool) -> tuple[Declare, ...]:
        setting = argument(
            "--set", action="append", metavar="PATH=VALUE", help="set a value (repeatable)"
        )
        return (
            *((setting,) if assignments else ()),
            argument("--unset", action="append", metavar="PATH",
                     help="remove an inherited value (repeatable)"),
            argument("--lock", action="append", metavar="PATH",
                     help="forbid overrides below (repeatable)"),
            argument("-m", "--message", metavar="MESSAGE", help="revision message (default: none)"),
            argument("--author", metavar="NAME", help="revision author (default: your login name)"),
            JSON,
        )  # fmt: skip

    def device_facts(verb: str) -> tuple[Declare, ...]:
        return (
            argument("--group", action="append", metavar="DIMENSION=PATH",
                     help=f"{verb} the group in a dimension, e.g. region=eu/eu-west (repeatable)"),
            argument("--hardware", metavar="H", help=f"{verb} the hardware model"),
            argument("--firmware", metavar="F", help=f"{verb} the firmware version"),
            argument("--agent-version", metavar="V", help=f"{verb} the agent version"),
        )  # fmt: skip

    db_or_create = functools.partial(add_db_option, create=True)
    layer = argument("layer", metavar="DIMENSION/PATH", help="or 'global'")
    schema = add_actions(commands, "schema", "load the fleet's schema")
    add_command(
        schema, "load", cmd_schema_load, "store a schema version and use it for the fleet",
        argument("file", metavar="FILE", help="schema document (JSON, TOML or YAML)"),
        db_or_create,
    )  # fmt: skip
    fleet = add_actions(commands, "fleet", "fleet settings")
    add_command(
        fleet, "dimensions", cmd_fleet_dimensions, "show or set dimension precedence, lowest first",
        argument("ranks", nargs="*", metavar="DIM[,DIM]", help="a comma ties dimensions"),
        JSON,
        db_or_create,
    )  # fmt: skip
    group = add_actions(commands, "group", "edit or show a group layer")
    add_command(
        group, "set", cmd_group_set, "edit a group's layer (validated against the whole fleet)",
        layer,
        argument("--file", metavar="LAYER.json", help="a layer document or a partial tree"),
        argument("--unlock", action="append", metavar="PATH", help="drop a lock (repeatable)"),
        *edit_options(assignments=True),
        db_or_create,
    )  # fmt: skip
    add_command(
        group, "show", cmd_group_show, "print a layer's content", layer, JSON, add_db_option
    )
    device = add_actions(commands, "device", "register devices and set their overrides")
    add_command(
        device, "add", cmd_device_add, "register a new device in groups",
        argument("id", metavar="ID", help=DEVICE_ID_RULE),
        *device_facts("set"),
        db_or_create,
    )  # fmt: skip
    add_command(
        device, "set", cmd_device_set,
        "change a registered device: its overrides, groups or hardware",
        argument("id", metavar="ID"),
        argument("set", nargs="*", metavar="PATH=VALUE", help="override values on this device"),
        *device_facts("change"),
        *edit_options(assignments=False),
        add_db_option,
    )  # fmt: skip
    add_device_actions(device)
    register_device_status(device)

    register_security(commands)

    add_command(
        commands, "config", cmd_config, "a device's effective config",
        argument("id", metavar="ID"),
        argument("--format", choices=("json", "cbor", "diag"), default="json",
                 help="default: json"),
        argument("--summary", action="store_true", help="ETag and what the next sync carries"),
        argument("--json", action="store_true", help="JSON output"),
        add_db_option,
    )  # fmt: skip
    add_command(
        commands, "explain", cmd_explain, "why a device has each value",
        argument("id", metavar="ID"),
        argument("path", nargs="?", metavar="PATH", help="default: every value"),
        JSON,
        add_db_option,
    )  # fmt: skip
    add_command(
        commands, "impact", cmd_impact,
        "dry run: which devices an edit changes (exit 1 when it would be refused)",
        argument("layer", metavar="DIMENSION/PATH", help="or 'global' or 'device/ID'"),
        *edit_options(assignments=True),
        add_db_option,
    )  # fmt: skip
    add_command(
        commands, "history", cmd_history, "revisions of a group or device layer",
        argument("kind", choices=("group", "device"), help="group or device"),
        argument("target", metavar="DIMENSION/PATH|ID"),
        JSON,
        add_db_option,
    )  # fmt: skip


def hierarchy_text(hierarchy: Hierarchy) -> str:
    """``hardware < function < region`` (ties joined by ``=``)."""
    return " < ".join("=".join(rank) for rank in hierarchy.ranks)
