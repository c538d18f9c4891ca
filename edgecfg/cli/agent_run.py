"""``agent run``: the device's sync loop as a command (issue 16: a device's
process loads this, not the whole CLI; see :mod:`edgecfg.cli.device`).

Also the state-directory helpers the other ``agent`` commands (``roles``)
share: :func:`open_state`, :func:`open_local`, :func:`reading_device`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
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
from edgecfg.cli.arguments import add_command, argument, number
from edgecfg.cli.files import load_schema, read_bytes
from edgecfg.core.apply import DEFAULT_DEADLINE_S
from edgecfg.core.ids import check_device_id
from edgecfg.core.rules import NO_ADAPTATION
from edgecfg.crypto import derive_store_key
from edgecfg.errors import CommandError
from edgecfg.wire.blocks import szx_for


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
    device: str = reading_device(args) or args.device  # another device's directory: refused
    state = open_state(args, device=device, writing=True)
    _claim(args.state_dir, device)
    local = open_local(args.state_dir, device, args.schema)
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


def reading_device(args: argparse.Namespace) -> str | None:
    """The device a reading command is about: ``--device``, else the one the
    state directory records; ``--device`` must agree with the record."""
    recorded = recorded_device(args.state_dir) if Path(args.state_dir).is_dir() else None
    if args.device is not None and recorded is not None and args.device != recorded:
        raise CommandError(
            f"{args.state_dir}: this state belongs to device {recorded}, not {args.device}"
        )
    return args.device if args.device is not None else recorded


def open_state(args: argparse.Namespace, *, device: str | None, writing: bool) -> LocalState:
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


def open_local(
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


def register_agent_run(agent: Any) -> None:
    """Add ``run`` to the ``agent`` command group."""
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
