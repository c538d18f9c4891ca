"""The hostile load of ``edgecfg bench flood`` and of the suite's flood test.

One host floods the gateway with hand-built CoAP datagrams (RFC 7252 §3; no
CoAP library: the point is bytes no polite client sends), from many source
ports, at a fixed rate.  The mix, in equal parts, is the one of issue 20:

- an observing GET of a real device's ``/cfg/{dev}`` with a fresh token;
- an observing GET of a made-up group layer ``/grp/region/flood-N``;
- a Block1 block 0 (1024 bytes, more to come) of ``POST /state/{dev}``;
- a Block2 GET of block 0 of ``/cfg/{dev}`` with a fresh token.

Every answer is read and tallied by its code, so a run can show that none
was a 5.00.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

CON: Final = 0
GET, POST = 1, 2
OBSERVE, URI_PATH, CONTENT_FORMAT, BLOCK2, BLOCK1 = 6, 11, 12, 23, 27
KINDS: Final = ("observe-cfg", "observe-made-up-layer", "block1-block-0", "block2-get")


def datagram(
    mtype: int, code: int, mid: int, token: bytes, options: Sequence[tuple[int, bytes]],
    *, payload: bytes = b"",
) -> bytes:  # fmt: skip
    """A CoAP message (RFC 7252 §3); ``options`` sorted by number."""

    def nibble(value: int) -> tuple[int, bytes]:
        if value < 13:
            return value, b""
        if value < 269:
            return 13, bytes([value - 13])
        return 14, (value - 269).to_bytes(2, "big")

    out = bytearray([0x40 | mtype << 4 | len(token), code]) + mid.to_bytes(2, "big") + token
    last = 0
    for number, value in options:
        delta, delta_ext = nibble(number - last)
        length, length_ext = nibble(len(value))
        out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def _path(*parts: str) -> list[tuple[int, bytes]]:
    return [(URI_PATH, part.encode()) for part in parts]


def hostile(number: int, devices: Sequence[str]) -> bytes:
    """The ``number``-th datagram of the mix (fresh token and message ID each)."""
    device = devices[number % len(devices)]
    token = number.to_bytes(8, "big")
    mid = number & 0xFFFF
    kind = KINDS[number % len(KINDS)]
    if kind == "observe-cfg":
        return datagram(CON, GET, mid, token, [(OBSERVE, b""), *_path("cfg", device)])
    if kind == "observe-made-up-layer":
        options = [(OBSERVE, b""), *_path("grp", "region", f"flood-{number}")]
        return datagram(CON, GET, mid, token, options)
    if kind == "block1-block-0":
        options = [*_path("state", device), (CONTENT_FORMAT, b"\x3c"), (BLOCK1, b"\x0e")]
        return datagram(CON, POST, mid, token, options, payload=b"\xa0" * 1024)  # block 0, M
    return datagram(CON, GET, mid, token, [*_path("cfg", device), (BLOCK2, b"\x06")])


@dataclass(slots=True)
class FloodReport:
    """What a flood sent and what came back, by CoAP code ("4.29", ...)."""

    sent: int = 0
    seconds: float = 0.0
    answers: Counter[str] = field(default_factory=Counter[str])

    @property
    def server_errors(self) -> int:
        """5.00 Internal Server Error answers: must be none."""
        return self.answers.get("5.00", 0)


def _code(data: bytes) -> str | None:
    if len(data) < 4:
        return None
    return f"{data[1] >> 5}.{data[1] & 0x1F:02d}"


def flood(
    gateway: tuple[str, int],
    *,
    devices: Sequence[str],
    rate: float,
    seconds: float,
    ports: int,
    source: str = "127.0.0.2",
    stop_after: int | None = None,
) -> FloodReport:
    """Send the mix to ``gateway`` at ``rate`` datagrams per second for
    ``seconds`` (or ``stop_after`` datagrams) from ``ports`` sockets bound to
    ``source``; blocking (run it in its own process or thread)."""
    sockets: list[socket.socket] = []
    report = FloodReport()
    try:
        for _ in range(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((source, 0))
            sockets.append(sock)
        numbers = itertools.count(int.from_bytes(os.urandom(3), "big") << 16)
        started = time.monotonic()
        tick = 0.01
        drain = itertools.cycle(range(len(sockets)))
        # the count is fixed in advance, so a busy machine sends late, never fewer
        total = int(seconds * rate)
        if stop_after is not None:
            total = min(total, stop_after)
        while report.sent < total:
            elapsed = time.monotonic() - started
            due = int(min(elapsed + tick, seconds) * rate) - report.sent
            if elapsed >= seconds:
                due = total - report.sent
            due = min(due, total - report.sent)
            for _ in range(max(0, due)):
                number = next(numbers)
                with_socket = sockets[number % len(sockets)]
                # a full local send buffer loses the datagram, as a link would
                with contextlib.suppress(BlockingIOError):
                    with_socket.sendto(hostile(number, devices), gateway)
                report.sent += 1
            for _ in range(min(len(sockets), 256)):
                _drain(sockets[next(drain)], report)
            time.sleep(max(0.0, started + elapsed + tick - time.monotonic()))
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:  # the last answers
            for sock in sockets:
                _drain(sock, report)
            time.sleep(0.1)
        report.seconds = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
    return report


def _drain(sock: socket.socket, report: FloodReport) -> None:
    while True:
        try:
            data = sock.recv(2048)
        except (BlockingIOError, ConnectionRefusedError):
            return
        code = _code(data)
        if code is not None:
            report.answers[code] += 1
