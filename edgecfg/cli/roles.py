"""``edgecfg gateway serve`` and ``edgecfg agent run``: the two long-running roles."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from edgecfg.agent.coap import CoapLink, LinkDown
from edgecfg.agent.state import LocalState
from edgecfg.agent.sync import AGENT_VERSION, Agent, SyncResult
from edgecfg.cli.files import CommandError
from edgecfg.gateway.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway, serve
from edgecfg.store import SQLiteStore
from edgecfg.wire.blocks import szx_for


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets: ``[::1]:5683``)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CommandError(f"--bind {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5683")
    return host.strip("[]"), int(port)


def cmd_gateway_serve(args: argparse.Namespace) -> int:
    if not args.insecure:
        raise CommandError(
            "OSCORE is not available yet in this build: start with --insecure to accept "
            "device ids from the path (for trusted networks and tests only)"
        )
    host, port = parse_bind(args.bind)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    async def main() -> None:
        with SQLiteStore(args.db) as store:
            gateway = Gateway(store, policy=InsecurePolicy(), refresh_s=args.refresh)

            def ready() -> None:
                print(f"edgecfg gateway: serving {args.db} on coap://{args.bind} (insecure)")
                sys.stdout.flush()

            await serve(gateway, host, port, ready=ready)
        print("edgecfg gateway: stopped")

    asyncio.run(main())
    return 0


def cmd_agent_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with CoapLink(args.gateway, ack_timeout=args.ack_timeout) as link:
            agent = Agent(
                link,
                LocalState(args.state_dir),
                device=args.device,
                agent_version=args.agent_version,
                schema_version=args.schema_version,
                firmware=args.firmware,
                szx=szx_for(args.block_size),
                critical_first=args.critical_first,
                budget=args.budget,
            )
            if args.observe and not args.once:
                await agent.watch(stop, lambda result: _print_result(args.device, result))
                return 0
            while True:
                try:
                    result = await agent.sync()
                    _print_result(args.device, result)
                except LinkDown as error:
                    print(f"{args.device}: gateway unreachable: {error}", file=sys.stderr)
                    if args.once:
                        return 1
                if args.once:
                    return 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=args.interval)
                if stop.is_set():
                    return 0

    return asyncio.run(main())


def _print_result(device: str, result: SyncResult) -> None:
    etag = result.etag.hex() if result.etag else "-"
    print(
        f"{device}: {result.outcome} {etag} in {result.round_trips} round trip(s), "
        f"{result.bytes_up} B up, {result.bytes_down} B down"
    )
    sys.stdout.flush()


def register(commands: Any) -> None:
    """Add ``gateway serve`` and ``agent run`` to the top-level subcommands."""
    p = commands.add_parser("gateway", help="the CoAP gateway")
    gateway = p.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    q = gateway.add_parser("serve", help="serve the fleet over CoAP (UDP)")
    q.add_argument("--bind", default="127.0.0.1:5683", metavar="HOST:PORT")
    q.add_argument("--insecure", action="store_true", help="no OSCORE: trust ids in paths")
    q.add_argument("--refresh", type=float, default=1.0, metavar="S",
                   help="seconds between picking up operator edits from the database")  # fmt: skip
    q.set_defaults(handler=cmd_gateway_serve)

    p = commands.add_parser("agent", help="the device agent")
    agent = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    q = agent.add_parser("run", help="keep one device's config in sync")
    q.add_argument("--gateway", required=True, metavar="coap://HOST:PORT")
    q.add_argument("--device", required=True, metavar="ID")
    q.add_argument("--state-dir", required=True, metavar="DIR")
    q.add_argument("--once", action="store_true", help="sync once and exit (1 if unreachable)")
    q.add_argument("--interval", type=float, default=3600.0, metavar="S")
    q.add_argument(
        "--observe", action="store_true", help="stay online: observe the config, sync on change"
    )
    q.add_argument("--block-size", type=int, default=1024, metavar="BYTES", help="16..1024")
    q.add_argument("--agent-version", default=AGENT_VERSION, metavar="V")
    q.add_argument("--schema-version", type=int, metavar="N")
    q.add_argument("--firmware", metavar="F")
    q.add_argument("--critical-first", action="store_true", help="critical class first")
    q.add_argument("--budget", type=int, metavar="BYTES", help="defer transfers larger than this")
    q.add_argument("--ack-timeout", type=float, default=2.0, metavar="S")
    q.set_defaults(handler=cmd_agent_run)
