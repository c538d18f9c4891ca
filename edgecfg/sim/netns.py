"""Network namespaces for real-network runs: each device its own address behind a shaped link.

:class:`Cells` drives ``ip`` and ``tc`` (iproute2): for each cell a network
namespace with a veth pair, the device end (``eth0`` in the namespace) and
the host end (in the caller's namespace), a /30 between them, and a ``tbf``
token bucket on each end (egress of the device end: the uplink; egress of
the host end: the downlink).  A process started under :meth:`Cell.command`
has the device address as its own; it reaches the host end's address, where
the lossy proxy listens.  Nothing is routed off the machine.

Names are unique per run (the namespace carries the owner's pid and a random
token, a host interface the token: interface names have at most 15
characters) and everything is removed by :meth:`Cells.close` (on failure, on
Ctrl-C, and at interpreter exit).  A run killed outright leaves namespaces
behind; the next run removes those whose owner process is gone
(:func:`remove_stale`).  Deleting a namespace deletes its veth pair.

Needs CAP_NET_ADMIN (root here); :func:`refusal` says in one line why a
machine cannot, for tests to skip with.  This module may be run as a
script to list or remove leftovers::

    python -m edgecfg.sim.netns list|clean
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from edgecfg.errors import CommandError, UsageError
from edgecfg.sim.shaping import Rates

PREFIX: Final = "edgecfg-sim"
"""Every namespace this module makes is named ``edgecfg-sim-<pid>-<token>-<n>``."""
_NAME: Final = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]+)-(\d+)$")
LOCK: Final = Path("/tmp/edgecfg-sim-netns.lock")
"""Held while a run picks its subnet and interface names (parallel runs)."""
MAX_CELLS: Final = 16_384
"""A run's /16 holds this many /30s."""
TBF_LATENCY_MS: Final = 10_000
"""How long a packet may wait in a token bucket before tbf drops it: long, so
loss stays the proxy's decision."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One device's place in the network."""

    namespace: str
    host_if: str
    host_address: str
    """Where the device's traffic goes (the proxy listens on it)."""
    device_address: str
    """The device's own address."""
    rates: Rates

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this cell's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


def _ip(*args: str) -> None:
    run = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise CommandError(f"ip {' '.join(args)}: {run.stderr.strip() or run.returncode}")


def _tc(namespace: str | None, *args: str) -> None:
    argv = ["tc", *args] if namespace is None else ["ip", "netns", "exec", namespace, "tc", *args]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise CommandError(f"{' '.join(argv)}: {run.stderr.strip() or run.returncode}")


def refusal() -> str | None:
    """Why this machine cannot run cells (``None`` when it can): no ``ip``
    or ``tc``, ``ip netns add`` refused, or no ``tbf`` qdisc."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    try:
        with Cells.open([Rates(40, 40)]):
            pass
    except CommandError as error:
        return f"network namespaces are not permitted here: {error}"
    return None


def namespaces() -> list[str]:
    """The names of the namespaces on this machine (``ip netns list``)."""
    run = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in run.stdout.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale() -> list[str]:
    """Remove the namespaces of runs whose process is gone; their names."""
    removed: list[str] = []
    for name in namespaces():
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(CommandError):
                _ip("netns", "delete", name)
                removed.append(name)
    return removed


def _used_second_octets() -> set[int]:
    run = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                         check=False)  # fmt: skip
    used: set[int] = set()
    for match in re.finditer(r"inet 10\.(\d+)\.", run.stdout):
        used.add(int(match.group(1)))
    return used


def cell_addresses(subnet: ipaddress.IPv4Network, index: int) -> tuple[str, str]:
    """The host and device addresses of cell ``index`` in ``subnet`` (a /16): the
    two usable addresses of its ``index``-th /30."""
    if not 0 <= index < MAX_CELLS:
        raise UsageError(f"cell index {index} is outside 0..{MAX_CELLS - 1}")
    base = int(subnet.network_address) + 4 * index
    return str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 2))


class Cells:
    """The namespaces of one run; a context manager that always cleans up."""

    def __init__(self, token: str, subnet: ipaddress.IPv4Network) -> None:
        self.token = token
        self.subnet = subnet
        self.cells: list[Cell] = []
        self._closed = False
        atexit.register(self.close)

    @classmethod
    def open(cls, rates: Sequence[Rates]) -> Self:
        """Make one cell per entry of ``rates``; on any failure remove what was made."""
        if not 0 < len(rates) <= MAX_CELLS:
            raise UsageError(f"a run has 1..{MAX_CELLS} cells, got {len(rates)}")
        remove_stale()
        with _locked():
            used = _used_second_octets()
            free = [octet for octet in range(64, 255) if octet not in used]
            if not free:
                raise CommandError("no free 10.x.0.0/16 for the run's cells")
            octet = free[secrets.randbelow(len(free))]
            existing = set(namespaces())
            token = secrets.token_hex(2)
            while any(name.split("-")[3:4] == [token] for name in existing if _NAME.match(name)):
                token = secrets.token_hex(2)
            made = cls(token, ipaddress.IPv4Network(f"10.{octet}.0.0/16"))
            try:
                for index, rate in enumerate(rates):
                    made.add(index, rate)
            except BaseException:
                made.close()
                raise
        return made

    def add(self, index: int, rates: Rates) -> Cell:
        namespace = f"{PREFIX}-{os.getpid()}-{self.token}-{index}"
        host_if = f"ec{self.token}h{index}"
        host, device = cell_addresses(self.subnet, index)
        _ip("netns", "add", namespace)
        cell = Cell(namespace, host_if, host, device, rates)
        self.cells.append(cell)  # from here on close() removes it
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("addr", "add", f"{host}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", namespace, "addr", "add", f"{device}/30", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _tc(None, *_tbf(host_if, rates.down_kbit))
        _tc(namespace, *_tbf("eth0", rates.up_kbit))
        return cell

    def close(self) -> None:
        """Remove every namespace (and so every veth pair); idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for cell in self.cells:
            with contextlib.suppress(CommandError):
                _ip("netns", "delete", cell.namespace)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tbf(interface: str, kbit: int) -> list[str]:
    """``tc`` arguments for a token bucket of ``kbit`` on ``interface``'s egress;
    the bucket holds one full-size frame (and at least a tick's worth)."""
    burst = max(1600, kbit * 1000 // 8 // 100)
    return ["qdisc", "add", "dev", interface, "root", "tbf", "rate", f"{kbit}kbit",
            "burst", str(burst), "latency", f"{TBF_LATENCY_MS}ms"]  # fmt: skip


@contextlib.contextmanager
def _locked() -> Generator[None]:
    with open(LOCK, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: Sequence[str]) -> int:
    """``list``: this module's namespaces; ``clean``: remove those of dead runs."""
    if argv == ["list"]:
        for name in namespaces():
            if _NAME.match(name):
                print(name)
        return 0
    if argv == ["clean"]:
        for name in remove_stale():
            print(f"removed {name}")
        return 0
    print("usage: python -m edgecfg.sim.netns list|clean", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
