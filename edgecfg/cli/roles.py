"""``edgecfg gateway serve`` and ``edgecfg agent run``: the two long-running roles."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import signal
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

from edgecfg.agent.apply import (
    PROBE_TIMEOUT_S,
    ApplyGuard,
    FileApplier,
    ReachabilityProbe,
    TrialPolicy,
)
from edgecfg.agent.coap import CoapLink, LinkDown
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.rules import load_record
from edgecfg.agent.sealed_store import (
    DeviceMismatch,
    KeyMismatch,
    LocalState,
    NoState,
    record_device,
    recorded_device,
)
from edgecfg.agent.sync import AGENT_VERSION, Agent, Backoff, Retry, SyncResult, until
from edgecfg.cli.adapt import READING, RULES, open_rules, parse_readings, print_adaptation
from edgecfg.cli.arguments import JSON, add_actions, add_command, argument, number
from edgecfg.cli.database import add_db_option, check_exists, connect, open_store, shown
from edgecfg.cli.files import load_schema, read_bytes, write_bytes
from edgecfg.cli.operator import parse_assignment, utc
from edgecfg.cli.security import add_master_key_option, master_cipher
from edgecfg.core.admission import Budgets
from edgecfg.core.apply import DEFAULT_DEADLINE_S
from edgecfg.core.ids import check_device_id
from edgecfg.core.path import format_path, is_prefix, parse_path
from edgecfg.core.rules import IDLE, NO_ADAPTATION, describe, progress
from edgecfg.core.tree import UNSET, UnsetType, flatten, get
from edgecfg.crypto import derive_store_key
from edgecfg.errors import CommandError, EdgecfgError
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.mqtt import DEFAULT_OUTBOX, MqttBridge, parse_mqtt_url
from edgecfg.gateway.oscore import StoredCredentials
from edgecfg.gateway.server import REFRESH_S, Gateway, serve
from edgecfg.store import is_postgres_url
from edgecfg.wire.blocks import szx_for
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


def cmd_agent_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    if args.attempts < 1:
        raise CommandError(f"--attempts {args.attempts}: must be at least 1")
    if not args.backoff >= 0:
        raise CommandError(f"--backoff {args.backoff}: must be 0 or more seconds")
    if not args.ack_timeout > 0:
        raise CommandError(f"--ack-timeout {args.ack_timeout}: must be above 0 seconds")
    if args.max_retransmit < 0:
        raise CommandError(f"--max-retransmit {args.max_retransmit}: must be 0 or more")
    check_device_id(args.device)  # one /cfg/{dev} path segment
    readings = parse_readings(args.reading)
    device: str = _reading_device(args) or args.device  # another device's directory: refused
    state = _state(args, device=device, writing=True)
    _claim(args.state_dir, device)
    local = _local(args.state_dir, device, args.schema)
    rules = open_rules(args, state, local.schema)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        progress = _Progress(loop, device, args.gateway, args.attempts, 3 * args.ack_timeout)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with CoapLink(
            args.gateway,
            ack_timeout=args.ack_timeout,
            max_retransmit=args.max_retransmit,
            credentials=args.credentials,
        ) as link:
            guard = _guard(args, state, link, device, local)
            if guard is not None:  # finish or undo a trial a restart interrupted
                await guard.boot()
            agent = Agent(
                link,
                state,
                guard=guard,
                local=local,
                device=device,
                agent_version=args.agent_version,
                schema_version=args.schema_version,
                firmware=args.firmware,
                szx=szx_for(args.block_size),
                critical_first=args.critical_first,
                budget=args.budget,
                backoff=Backoff(base_s=args.backoff, attempts=args.attempts),
                on_retry=progress.retried,
                rules=rules,
            )
            shown = NO_ADAPTATION  # the layer last printed
            if args.observe and not args.once:
                agent.wake(readings)
                progress.finished()  # quiet is normal while observing: no notes
                await agent.watch(stop, lambda result: _print_result(device, result))
                return _stopped(device)
            while True:
                # this wake's readings first: the rules adapt offline, and the
                # report of this sync carries the layer
                woke = agent.wake(readings) is not None
                try:
                    progress.started()
                    try:
                        result = await until(stop, agent.sync())
                    finally:
                        progress.finished()
                    if not woke:  # the first config just arrived: the rules run on it now
                        agent.wake(readings)
                except LinkDown as error:
                    message = _unreachable(args.gateway, device, args.attempts, error)
                    if args.once:
                        raise CommandError(message) from None
                    print(f"{message}; next sync in {args.interval:g} s", file=sys.stderr)
                else:
                    if result is not None:
                        _print_result(device, result)
                    if rules is not None and rules.adaptation != shown:
                        shown = rules.adaptation
                        print_adaptation(shown, as_json=False)
                if stop.is_set():
                    return _stopped(device)
                if args.once:
                    return 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=args.interval)
                if stop.is_set():
                    return _stopped(device)

    return asyncio.run(main())


def _guard(
    args: argparse.Namespace, state: LocalState, link: CoapLink, device: str, local: LocalOverrides
) -> ApplyGuard | None:
    """With ``--apply-file``: each new config goes through apply → probe →
    commit or revert (issue 15), written to that file, probed for reachability."""
    if args.apply_file is None:
        return None
    if not args.confirm_within > 0:
        raise CommandError(f"--confirm-within {args.confirm_within}: must be above 0 seconds")
    policy = TrialPolicy(
        local.schema, firmware=args.firmware, deadline_s=args.confirm_within,
        probe_timeout_s=min(PROBE_TIMEOUT_S, args.confirm_within),
    )  # fmt: skip
    return ApplyGuard(
        state, appliers=[FileApplier(args.apply_file)],
        probes=[ReachabilityProbe(device, link)], policy=policy,
    )  # fmt: skip


class _Progress:
    """What a person sees while the gateway does not answer (on stderr: stdout
    carries results): each failed attempt and, when one attempt stays quiet
    for ``quiet_s`` (its request still retransmitting), a note that it waits."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        device: str,
        gateway: str,
        attempts: int,
        quiet_s: float,
    ) -> None:
        self.loop = loop
        self.device = device
        self.gateway = gateway
        self.attempts = attempts
        self.quiet_s = quiet_s
        self._note: asyncio.TimerHandle | None = None

    def started(self) -> None:
        self._expect(1, self.quiet_s)

    def finished(self) -> None:
        if self._note is not None:
            self._note.cancel()
            self._note = None

    def retried(self, retry: Retry) -> None:
        wait = _seconds(retry.delay_s)
        if retry.attempts is None:  # online: the observation broke, the agent reconnects
            line = f"{self.device}: {retry.error}; reconnecting in {wait} s (try {retry.attempt})"
        else:
            line = (
                f"{self.device}: attempt {retry.attempt} of {retry.attempts} failed: "
                f"{retry.error.cause}; next retry in {wait} s"
            )
            if self._note is not None:
                self._expect(retry.attempt + 1, retry.delay_s + self.quiet_s)
        _progress(line)

    def _expect(self, attempt: int, after_s: float) -> None:
        self.finished()
        line = (
            f"{self.device}: no answer from {self.gateway} for {_seconds(self.quiet_s)} s "
            f"(attempt {attempt} of {self.attempts}); still trying"
        )
        self._note = self.loop.call_later(after_s, _progress, line)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _seconds(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _unreachable(gateway: str, device: str, attempts: int, error: LinkDown) -> str:
    """The last word after every attempt failed: the address, what went wrong, why."""
    address = error.address or gateway
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return (
        f"{device}: gateway {address} unreachable after {tries} "
        f"(last: {error.cause}); {error.likely}"
    )


def _stopped(device: str) -> int:
    print(f"{device}: stopped", flush=True)
    return 0


def _claim(state_dir: str, device: str) -> None:
    """Record the device a state directory belongs to; refuse another device's."""
    try:
        record_device(state_dir, device)
    except DeviceMismatch as error:
        raise CommandError(
            f"{state_dir}: this state belongs to device {error.recorded}, not {device}; "
            "use one --state-dir per device"
        ) from None


def _reading_device(args: argparse.Namespace) -> str | None:
    """The device a reading command is about: ``--device``, else the one the
    state directory records; ``--device`` must agree with the record."""
    recorded = recorded_device(args.state_dir) if Path(args.state_dir).is_dir() else None
    if args.device is not None and recorded is not None and args.device != recorded:
        raise CommandError(
            f"{args.state_dir}: this state belongs to device {recorded}, not {args.device}"
        )
    return args.device if args.device is not None else recorded


def _state(args: argparse.Namespace, *, device: str | None, writing: bool) -> LocalState:
    """The agent's store, keyed from ``--secret-file`` (else a development key file).

    Writing opens (or creates) the directory; reading creates nothing and
    fails, saying why, when there is no state or the key does not open it.
    """
    key: bytes | None = None
    if args.secret_file is not None:
        secret = read_bytes(args.secret_file)
        if len(secret) < 16:
            raise CommandError(
                f"{args.secret_file}: a provisioning secret must be at least 16 bytes, "
                f"got {len(secret)}"
            )
        if device is None:
            raise CommandError(
                f"{args.state_dir}: the store key is derived from {args.secret_file} and a "
                "device id, and this state directory records none: pass --device ID"
            )
        key = derive_store_key(secret, device)
    try:
        if writing:
            return LocalState(args.state_dir, key=key)
        return LocalState.open_existing(args.state_dir, key=key)
    except NoState as error:
        raise CommandError(f"{error}; check --state-dir") from None
    except KeyMismatch as error:
        if args.secret_file is None:
            raise CommandError(f"{error}: pass --secret-file (and --device)") from None
        raise CommandError(
            f"{args.state_dir}: the key derived from {args.secret_file} for device "
            f"{device} does not open this store: is it the device's secret, and the "
            "--device the agent ran as?"
        ) from None


def _local(
    state_dir: str, device: str, schema_file: str | None, *, read_only: bool = False
) -> LocalOverrides:
    """The agent's journal; a given schema is kept in the state directory for later."""
    stored = Path(state_dir) / "schema.json"
    if schema_file is not None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        stored.write_bytes(read_bytes(schema_file))
    schema = load_schema(str(stored)) if stored.exists() else None
    return LocalOverrides(
        Path(state_dir) / "local", node=device, schema=schema, read_only=read_only
    )


def cmd_agent_set(args: argparse.Namespace) -> int:
    """Record local overrides (checked against the schema's local policy)."""
    if args.schema is None and not (Path(args.state_dir) / "schema.json").exists():
        # before anything is created: a mistyped --state-dir must not leave a directory
        raise CommandError(
            f"{args.state_dir}: no schema to check local overrides against; pass --schema FILE"
        )
    if not args.assignments and not args.unset:
        raise CommandError("nothing to set: give PATH=VALUE or --unset PATH")
    local = _local(args.state_dir, _reading_device(args) or "agent", args.schema)
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
    device = _reading_device(args)
    state = _state(args, device=device, writing=False)
    local = _local(args.state_dir, device or "agent", None, read_only=True)
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
    device = _reading_device(args)
    state = _state(args, device=device, writing=False)
    local = _local(args.state_dir, device or "agent", args.schema)
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


def _print_result(device: str, result: SyncResult) -> None:
    etag = result.etag.hex() if result.etag else "-"
    print(
        f"{device}: {result.outcome} {etag} in {result.round_trips} round trip(s), "
        f"{result.bytes_up} B up, {result.bytes_down} B down"
    )
    sys.stdout.flush()


STATE_DIR: Final = argument(
    "--state-dir", required=True, metavar="DIR", help="the device's encrypted local store"
)
SECRET_FILE: Final = argument(
    "--secret-file",
    metavar="FILE",
    help="provisioning secret the store key is derived from (else a dev key file)",
)


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
    add_command(
        agent, "run", cmd_agent_run, "keep one device's config in sync",
        argument("--gateway", required=True, metavar="coap://HOST:PORT",
                 help="the gateway to sync with"),
        argument("--device", required=True, metavar="ID",
                 help="this device's id (recorded in the state dir)"),
        STATE_DIR,
        argument("--once", action="store_true", help="sync once and exit (1 if unreachable)"),
        number("--interval", 3600.0, "seconds between syncs without --once or --observe",
               metavar="S"),
        argument("--observe", action="store_true",
                 help="stay online: observe the config, sync on change"),
        number("--block-size", 1024, "Block2 size, a power of two in 16..1024", metavar="BYTES"),
        argument("--agent-version", default=AGENT_VERSION, metavar="V",
                 help=f"agent version reported to the gateway (default: {AGENT_VERSION})"),
        argument("--schema-version", type=int, metavar="N",
                 help="schema version reported (default: none)"),
        argument("--firmware", metavar="F", help="firmware version reported (default: none)"),
        argument("--critical-first", action="store_true", help="critical class first"),
        argument("--budget", type=int, metavar="BYTES", help="defer transfers larger than this"),
        number("--ack-timeout", 2.0, metavar="S",
               text="CoAP ACK_TIMEOUT, the first retransmission wait"),
        number("--max-retransmit", 4, metavar="N",
               text="CoAP retransmissions per request, RFC 7252 MAX_RETRANSMIT"),
        number("--attempts", 6, metavar="N",
               text="attempts per sync before giving up until the next one"),
        number("--backoff", 1.0, metavar="S",
               text="first retry delay bound; doubles per attempt, full jitter"),
        argument("--credentials", metavar="FILE",
                 help="OSCORE credentials.json from 'device enroll' (else plain CoAP)"),
        argument("--schema", metavar="FILE", help="schema for local-override policies"),
        argument("--apply-file", metavar="FILE",
                 help="apply each new config to FILE (JSON), probe that the gateway is still "
                      "reachable, and revert by itself when not (default: store configs only)"),
        number("--confirm-within", DEFAULT_DEADLINE_S, metavar="S",
               text="with --apply-file: revert a config not confirmed within S seconds, "
                    "also across restarts"),
        RULES,
        READING,
        SECRET_FILE,
    )  # fmt: skip

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
