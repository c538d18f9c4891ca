"""``edgecfg gateway serve`` and ``edgecfg agent run``: the two long-running roles."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

from edgecfg.agent.rules import load_record
from edgecfg.cli.adapt import READING, RULES, open_rules, parse_readings, print_adaptation, utc
from edgecfg.cli.agent_run import (
    SECRET_FILE,
    STATE_DIR,
    open_local,
    open_state,
    reading_device,
    register_agent_run,
)
from edgecfg.cli.arguments import JSON, add_actions, add_command, argument, number
from edgecfg.cli.database import add_db_option, check_exists, connect, open_store, shown
from edgecfg.cli.files import write_bytes
from edgecfg.cli.operator import parse_assignment
from edgecfg.cli.security import add_master_key_option, master_cipher
from edgecfg.core.admission import Budgets
from edgecfg.core.path import format_path, is_prefix, parse_path
from edgecfg.core.rules import IDLE, describe, progress
from edgecfg.core.tree import UNSET, UnsetType, flatten, get
from edgecfg.errors import CommandError, EdgecfgError
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.mqtt import DEFAULT_OUTBOX, MqttBridge, parse_mqtt_url
from edgecfg.gateway.oscore import StoredCredentials
from edgecfg.gateway.server import REFRESH_S, Gateway, serve
from edgecfg.store import is_postgres_url
from edgecfg.wire.documents import write_config

MAX_PORT = 65535
DEFAULT_BUDGETS = Budgets()

VERSION_RETENTION_DAYS: Final = 30.0
"""Served versions a device may still hold as a delta base, by default."""


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets: ``[::1]:5683``); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CommandError(f"--bind {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5683")
    if int(port) > MAX_PORT:
        raise CommandError(f"--bind {text!r}: port {int(port)} is above {MAX_PORT}")
    return host.strip("[]"), int(port)


def cmd_gateway_serve(args: argparse.Namespace) -> int:
    host, port = parse_bind(args.bind)
    if not args.refresh > 0:
        raise CommandError(
            f"--refresh {args.refresh}: must be above 0 (operator edits and revocations "
            "are picked up at that interval)"
        )
    check_exists(args.db)
    broker = parse_mqtt_url(args.mqtt) if args.mqtt else None
    outbox = _mqtt_outbox(args) if broker else None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    async def main() -> None:
        # the lock file first: a gateway already serving is the likelier mistake
        with _file_lock(args.db), connect(args.db) as store:
            budgets = _budgets(args)
            if args.insecure:
                gateway = Gateway(
                    store, policy=InsecurePolicy(), refresh_s=args.refresh, budgets=budgets
                )
                mode = "insecure: no OSCORE, device ids trusted from paths"
            else:
                credentials = StoredCredentials(
                    store, master_cipher(args, store, create=False),
                    piv_log=Path(args.debug_piv_log) if args.debug_piv_log else None,
                    shared=is_postgres_url(args.db),  # several gateways may serve it
                )  # fmt: skip
                try:
                    credentials.check_key()
                except EdgecfgError as error:
                    raise CommandError(str(error)) from None
                gateway = Gateway(
                    store, credentials=credentials, refresh_s=args.refresh, budgets=budgets
                )
                mode = f"OSCORE, {store.count_credentials()} enrolled identities"

            bridge = None
            if broker is not None and outbox is not None:
                bridge = MqttBridge(broker, outbox, max_messages=args.mqtt_outbox_size)
                gateway.service.events = bridge
                mode += f"; telemetry and events to mqtt://{broker.host}:{broker.port}"
                mode += f"/{broker.prefix}"

            def ready() -> None:
                if bridge is not None:
                    bridge.start()
                print(f"edgecfg gateway: serving {shown(args.db)} on {gateway.uri} ({mode})")
                sys.stdout.flush()

            try:
                await serve(gateway, host, port, ready=ready)
            except OSError as error:
                raise CommandError(_bind_failure(args.bind, error)) from None
            finally:
                if bridge is not None:
                    await bridge.stop()
        print("edgecfg gateway: stopped")

    asyncio.run(main())
    return 0


def _budgets(args: argparse.Namespace) -> Budgets:
    """The gateway's budgets (issue 20) from the command line."""
    if not args.peer_rate > 0 or not args.memory_mib > 0:
        raise CommandError("--peer-rate and --memory-mib must be above 0")
    per_day = args.telemetry_kib_per_day
    if per_day is not None and per_day < 0:
        raise CommandError(f"--telemetry-kib-per-day {per_day}: must be 0 or more")
    return Budgets(
        peer_rate=args.peer_rate,
        peer_burst=max(args.peer_rate * 10, 1.0),
        memory_mib=args.memory_mib,
        telemetry_kib_per_day=None if per_day == 0 else per_day,
    )


def _mqtt_outbox(args: argparse.Namespace) -> Path:
    """Where the MQTT bridge queues messages: ``--mqtt-outbox``, else beside a
    SQLite database (a PostgreSQL URL has no folder: the option is needed)."""
    if args.mqtt_outbox:
        return Path(args.mqtt_outbox)
    if args.db == ":memory:" or is_postgres_url(args.db):
        raise CommandError("--mqtt needs --mqtt-outbox FILE with this database")
    return Path(f"{args.db}.mqtt-outbox")


def _bind_failure(bind: str, error: OSError) -> str:
    """One line for a socket that could not be bound, with the likely cause."""
    reason = error.strerror or str(error)
    hints = {
        errno.EADDRINUSE: "another process (another gateway?) is bound to that port; "
        "stop it or choose another --bind",
        errno.EADDRNOTAVAIL: "that address is not on this machine; use one of its "
        "addresses, 127.0.0.1 or 0.0.0.0",
        errno.EACCES: "ports below 1024 need privileges; use 5683 or above",
    }
    hint = hints.get(error.errno or 0, "check --bind")
    return f"cannot serve on {bind}: {reason} ({hint})"


@contextlib.contextmanager
def _file_lock(db: str) -> Generator[None]:
    """One gateway per SQLite database (``DB.lock``, flock): SQLite is one
    machine's database.  Several gateways share a PostgreSQL database: they
    see each other's writes by LISTEN/NOTIFY and reserve OSCORE sequence
    numbers atomically there (see "Running several gateways" in the README)."""
    if db == ":memory:" or is_postgres_url(db):
        yield
        return
    with open(f"{db}.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandError(f"{db}: another gateway is serving this database") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cmd_gateway_prune(args: argparse.Namespace) -> int:
    """Drop the version vectors recorded before the retention."""
    if not args.older_than >= 0:
        raise CommandError(f"--older-than {args.older_than}: days, 0 or more")
    with open_store(args) as store:
        dropped = store.drop_versions(before=time.time() - args.older_than * 86_400)
    print(f"forgot {dropped} served version(s) older than {args.older_than:g} day(s)")
    return 0


def cmd_agent_set(args: argparse.Namespace) -> int:
    """Record local overrides (checked against the schema's local policy)."""
    if args.schema is None and not (Path(args.state_dir) / "schema.json").exists():
        # before anything is created: a mistyped --state-dir must not leave a directory
        raise CommandError(
            f"{args.state_dir}: no schema to check local overrides against; pass --schema FILE"
        )
    if not args.assignments and not args.unset:
        raise CommandError("nothing to set: give PATH=VALUE or --unset PATH")
    local = open_local(args.state_dir, reading_device(args) or "agent", args.schema)
    now_ms = int(time.time() * 1000)
    for item in args.assignments:
        path, value = parse_assignment(item)
        entry = local.set(path, value, reason=args.reason, now_ms=now_ms)
        print(f"#{entry.sequence} {format_path(path)} = {json.dumps(value)} (pending sync)")
    removals: list[str] = list(args.unset or [])
    for dotted in removals:
        entry = local.set(parse_path(dotted), UNSET, reason=args.reason, now_ms=now_ms)
        print(f"#{entry.sequence} {dotted} removed (pending sync)")
    return 0


def cmd_agent_show(args: argparse.Namespace) -> int:
    """The effective local configuration and where each value comes from.

    Reads only: a missing or mistyped ``--state-dir`` and a key that does not
    open the store are errors, never an empty configuration."""
    device = reading_device(args)
    state = open_state(args, device=device, writing=False)
    local = open_local(args.state_dir, device or "agent", None, read_only=True)
    held = state.load_config()
    if held is None:  # on stderr: stdout stays the (empty) configuration
        damage = state.events()
        why = f"the store is damaged ({damage[0]})" if damage else "never synced"
        print(f"{args.state_dir}: no configuration applied yet ({why})", file=sys.stderr)
    applied = held.tree if held is not None else {}
    adaptation = load_record(state).adaptation  # the rules' layer, on top (issue 14)
    effective = adaptation.lay(local.effective(applied))
    prefix = parse_path(args.path) if args.path else ()
    node = get(effective, prefix) if prefix else effective
    if isinstance(node, UnsetType):
        raise CommandError(f"{args.path}: not in the local configuration")
    if not args.explain:
        write_bytes("-", write_config(node, "json"))
        return 0
    pending = local.overrides()
    verdicts = local.merged()
    origin = f"gateway config {held.etag.hex()}" if held is not None else "nothing applied yet"
    rows: list[dict[str, object]] = []
    for path, value in sorted(flatten(effective).items()):
        if not is_prefix(prefix, path):
            continue
        dotted = format_path(path)
        adapted = adaptation.at(path)
        if adapted is not None:
            source = f"local adaptation since {utc(adapted.since)}: {describe(adapted)}"
        elif path in pending:
            entry = pending[path]
            source = f"local override #{entry.sequence} (pending: {entry.reason})"
        elif dotted in verdicts and verdicts[dotted] == "accepted":
            source = "local override (merged by the gateway)"
        else:
            source = origin
        rows.append({"path": dotted, "value": value, "source": source})
    for dotted, verdict in sorted(verdicts.items()):
        if verdict != "accepted" and is_prefix(prefix, parse_path(dotted)):
            rows.append({"path": dotted, "value": None, "source": f"local override {verdict}"})
    for refused in adaptation.refused:
        if is_prefix(prefix, refused.path):
            source = f"local adaptation: rule {refused.rule} not applied: {refused.reason}"
            rows.append({"path": refused.dotted, "value": None, "source": source})
    if args.json:
        print(json.dumps(rows, indent=2, default=_bytes_as_diag))
    else:
        for row in rows:
            shown = json.dumps(row["value"], default=_bytes_as_diag)
            print(f"{row['path']} = {shown}   ({row['source']})")
    return 0


def cmd_agent_adapt(args: argparse.Namespace) -> int:
    """One wake of the device's rules, offline: the readings go in, the
    adaptation layer comes out (and is kept, for the next sync to report)."""
    readings = parse_readings(args.reading)
    device = reading_device(args)
    state = open_state(args, device=device, writing=False)
    local = open_local(args.state_dir, device or "agent", args.schema)
    rules = open_rules(args, state, local.schema)
    if rules is None:
        raise CommandError(f"{args.state_dir}: no rules kept here; pass --rules FILE")
    held = state.load_config()
    if held is None:
        raise CommandError(
            f"{args.state_dir}: no configuration applied yet: the rules adapt the synced "
            "configuration, so run 'agent run' once first"
        )
    now = time.time() if args.at is None else args.at
    adaptation = rules.wake(readings, now=now, base=local.effective(held.tree))
    print_adaptation(adaptation, as_json=args.json)
    if not args.json:  # the rules part of the way to a change
        for rule in rules.rules.rules:
            found = progress(rule, rules.record.states.get(rule.name, IDLE))
            if found is not None:
                text, until = found
                print(text if until is None else f"{text}, held by its dwell until {utc(until)}")
    return 0


def _bytes_as_diag(value: object) -> str:
    """JSON has no bytes: show them as CBOR diagnostic notation (``h'00ff'``)."""
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    raise TypeError(f"{type(value).__name__} is not a configuration value")


def register(commands: Any) -> None:
    """Add ``gateway serve`` and ``agent run`` to the top-level subcommands."""
    gateway = add_actions(commands, "gateway", "the CoAP gateway")
    add_command(
        gateway, "serve", cmd_gateway_serve, "serve the fleet over CoAP (UDP)",
        argument("--bind", default="127.0.0.1:5683", metavar="HOST:PORT",
                 help="UDP address to serve on; port 0 picks a free one "
                 "(default: 127.0.0.1:5683)"),
        argument("--insecure", action="store_true",
                 help="plain CoAP, no OSCORE: device ids in paths are trusted "
                 "(test benches only)"),
        add_master_key_option,
        number("--peer-rate", DEFAULT_BUDGETS.peer_rate, metavar="N",
               text="requests per second one peer (address or identity) may send, bursts of 10 s",
               then="; beyond: 4.29 with Max-Age"),
        number("--memory-mib", DEFAULT_BUDGETS.memory_mib, metavar="MIB",
               text="memory for remembered exchanges in all; beyond: 5.03 with Max-Age"),
        argument("--telemetry-kib-per-day", type=float, metavar="KIB",
                 default=DEFAULT_BUDGETS.telemetry_kib_per_day,  # float | None, as in Budgets
                 help="telemetry one device may store per UTC day, 0: no limit "
                 f"(default: {DEFAULT_BUDGETS.telemetry_kib_per_day:g})"),
        argument("--mqtt", metavar="mqtt://HOST:PORT[/prefix]",
                 help="publish telemetry and sync events to this MQTT broker (default: none; "
                 "prefix default: edgecfg)"),
        argument("--mqtt-outbox", metavar="FILE",
                 help="on-disk queue for the broker's outages (default: DB.mqtt-outbox)"),
        number("--mqtt-outbox-size", DEFAULT_OUTBOX, metavar="N",
               text="messages the outbox keeps; beyond, the oldest are dropped and counted"),
        number("--refresh", REFRESH_S, metavar="S",
               text="seconds between picking up operator edits and revocations from the database "
               "(on PostgreSQL, a commit from anywhere wakes it at once)"),
        argument("--debug-piv-log", metavar="FILE",
                 help="append every OSCORE (kid, Partial IV) this gateway generates to FILE, "
                 "one 'kid-hex number' line each (tests; default: none)"),
        add_db_option,
    )  # fmt: skip
    add_command(
        gateway, "prune", cmd_gateway_prune,
        "forget served versions older than a retention (their devices get "
        "the full config at their next sync)",
        number("--older-than", VERSION_RETENTION_DAYS, "retention in days", metavar="DAYS"),
        add_db_option,
    )  # fmt: skip

    agent = add_actions(commands, "agent", "the device agent")
    register_agent_run(agent)

    add_command(
        agent, "adapt", cmd_agent_adapt,
        "one wake of the device's adaptive rules, offline: readings in, adapted values out",
        STATE_DIR,
        READING,
        RULES,
        argument("--schema", metavar="FILE", help="schema (kept in the state dir)"),
        argument("--at", type=float, metavar="SECONDS",
                 help="the wake's wall-clock time, Unix seconds (default: now)"),
        JSON,
        argument("--device", metavar="ID",
                 help="device id the store key is for (default: the recorded one)"),
        SECRET_FILE,
    )  # fmt: skip

    add_command(
        agent, "set", cmd_agent_set, "change values locally (offline), within policy",
        argument("assignments", nargs="*", metavar="PATH=VALUE", help="values to set locally"),
        STATE_DIR,
        argument("--reason", default="", metavar="TEXT",
                 help="why, kept in the journal (default: none)"),
        argument("--unset", action="append", metavar="PATH", help="drop a local override"),
        argument("--schema", metavar="FILE", help="schema (kept in the state dir)"),
        argument("--device", metavar="ID",
                 help="device id (default: the one 'agent run' recorded)"),
    )  # fmt: skip

    add_command(
        agent, "show", cmd_agent_show, "the effective local config and its sources",
        argument("path", nargs="?", metavar="PATH", help="default: the whole config"),
        STATE_DIR,
        argument("--explain", action="store_true", help="say where each value comes from"),
        JSON,
        argument("--device", metavar="ID",
                 help="device id the store key is for (default: the recorded one)"),
        SECRET_FILE,
    )  # fmt: skip
