"""libcoap's ``coap-client`` (4.3.x) against a gateway running in a thread (DESIGN §5).

The gateway runs on its own asyncio loop in a background thread, so that the
synchronous ``subprocess.run`` calls of the tests do not block it; anything
touching the fleet or the store goes through :meth:`Running.call` onto that loop.

``coap-client`` exits 0 even when the request failed, so the tests judge the
``-v 7`` debug log (written to stdout) and the bytes written with ``-o``.  In
libcoap 4.3.1 each PDU sent or received is logged as one line::

    v:1 t:ACK c:2.05 i:34c4 {01} [ ETag:0x6add3cbb05f0292a, Content-Format:application/cbor,
        Block2:0/M/64, Size2:6539 ] :: binary data length 64

(one line in the log), followed for binary payloads by ``<<hex>>`` lines, or
with ``:: 'text'`` for a printable payload.  Block2 is printed
``num/M|_/size``; a response to a client-driven block request is logged a
second time with the original token after ``Client app version of updated PDU``.
An error response also prints ``4.04 <diagnostic>`` on stderr, not to ``-o``.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from edgecfg.core.tree import Value
from edgecfg.gateway.server import Gateway
from edgecfg.wire.cbor import decode_item

CLIENT: Final = "coap-client-notls"
HOST: Final = "127.0.0.1"
TIMEOUT_S: Final = 15  # every subprocess, hard
CLIENT_WAIT_S: Final = "5"  # coap-client's own -B, below TIMEOUT_S

T = TypeVar("T")


# ---------------------------------------------------------------- the gateway thread


class Running:
    """A gateway serving on its own event loop in a background thread."""

    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.port = port
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def uri(self, path: str) -> str:
        return f"coap://{HOST}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the gateway did not start within 10 s")
        if self._failure is not None:
            raise RuntimeError("the gateway failed to start") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test thread by start()
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.gateway.start(HOST, self.port)
        try:
            self._ready.set()
            await self._stop.wait()
        finally:
            await self.gateway.stop()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the gateway's loop (between requests) and return its result."""
        assert self.loop is not None

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


# ---------------------------------------------------------------- coap-client and its log

_PDU = re.compile(
    r"^v:1 t:(?P<type>CON|NON|ACK|RST) c:(?P<code>\S+) i:(?P<mid>[0-9a-f]+) "
    r"\{(?P<token>[0-9a-f]*)\} \[ ?(?P<options>.*?) ?\](?: :: (?P<payload>.*))?$"
)
_BLOCK = re.compile(r"^(?P<num>\d+)/(?P<more>[M_])/(?P<size>\d+)$")


@dataclass(frozen=True)
class Pdu:
    """One PDU line of coap-client's ``-v 7`` log."""

    type: str
    code: str
    mid: str
    token: str
    options: dict[str, list[str]]
    payload: str | None  # "binary data length N", "'text'", or None when empty

    @property
    def is_response(self) -> bool:
        return self.code[0].isdigit() and self.code != "0.00"

    def option(self, name: str) -> str | None:
        values = self.options.get(name)
        return values[0] if values else None

    @property
    def etag(self) -> str | None:
        """The ETag as libcoap prints it: ``0x`` and lowercase hex."""
        return self.option("ETag")

    @property
    def block2(self) -> tuple[int, bool, int] | None:
        text = self.option("Block2")
        if text is None:
            return None
        match = _BLOCK.match(text)
        assert match, f"unexpected Block2 format {text!r}"
        return int(match["num"]), match["more"] == "M", int(match["size"])

    @property
    def size2(self) -> int | None:
        text = self.option("Size2")
        return None if text is None else int(text)

    @property
    def text(self) -> str | None:
        """A printable payload, as libcoap quotes it."""
        if self.payload is None or not self.payload.startswith("'"):
            return None
        return self.payload[1:-1]


def parse_log(log: str) -> list[Pdu]:
    pdus: list[Pdu] = []
    for line in log.splitlines():
        match = _PDU.match(line)
        if match is None:
            continue
        options: dict[str, list[str]] = {}
        if match["options"]:
            for item in match["options"].split(", "):
                name, _, value = item.partition(":")
                options.setdefault(name, []).append(value)
        pdus.append(
            Pdu(
                match["type"],
                match["code"],
                match["mid"],
                match["token"],
                options,
                match["payload"],
            )
        )
    return pdus


@dataclass(frozen=True)
class Exchange:
    log: str
    stderr: str
    pdus: list[Pdu]
    body: bytes | None  # what -o wrote; None when coap-client wrote no file

    @property
    def responses(self) -> list[Pdu]:
        """Responses received, each once (the re-logged "client app version" dropped)."""
        seen: set[tuple[str, str | None]] = set()
        out: list[Pdu] = []
        for pdu in self.pdus:
            key = (pdu.mid, pdu.option("Block2"))
            if pdu.is_response and key not in seen:
                seen.add(key)
                out.append(pdu)
        return out

    def requests(self, method: str) -> list[Pdu]:
        """Requests sent with this method, each once (a retransmission keeps its id)."""
        seen: set[str] = set()
        out: list[Pdu] = []
        for pdu in self.pdus:
            if pdu.code == method and pdu.mid not in seen:
                seen.add(pdu.mid)
                out.append(pdu)
        return out

    def only_response(self) -> Pdu:
        responses = self.responses
        assert len(responses) == 1, self.log
        return responses[0]


def coap(running: Running, tmp_path: Path, path: str, *args: str) -> Exchange:
    """One coap-client run (``-v 7``, output to a fresh file) against the gateway."""
    output = tmp_path / f"out-{time.monotonic_ns()}.bin"
    command = [CLIENT, "-v", "7", "-B", CLIENT_WAIT_S, "-o", str(output), *args, running.uri(path)]
    done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
    log = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, f"{command} exited {done.returncode}: {log}"
    body = output.read_bytes() if output.exists() else None
    return Exchange(log, done.stderr.decode("utf-8", "replace"), parse_log(log), body)


def cbor_sequence(data: bytes) -> list[Value]:
    """Split concatenated CBOR items (coap-client appends every body it gets to -o)."""
    items: list[Value] = []
    offset = 0
    while offset < len(data):
        item, offset = decode_item(data, offset)
        items.append(item)
    return items
