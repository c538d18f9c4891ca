"""The MQTT bridge: telemetry and sync events to an existing broker
(``gateway serve --mqtt mqtt://HOST:PORT[/prefix]``).  The one owner of aiomqtt.

Topics (``prefix`` defaults to ``edgecfg``):

- ``{prefix}/tel/{dev}``: each telemetry pack as received, SenML-CBOR (112);
- ``{prefix}/tel/{dev}/json``: the same pack resolved, SenML-JSON (110);
- ``{prefix}/events/applied/{dev}``: JSON ``{"device", "etag", "time"}``,
  the version a state report says the device runs;
- ``{prefix}/events/local/{dev}``: JSON ``{"device", "outcome", "time"}``,
  the merge of the device's offline changes (accepted and refused keys).

Serving never waits on the broker: events go to a bounded on-disk outbox
(:class:`~edgecfg.store.outbox.Outbox`), and one task publishes them with
QoS 1, removing each batch once the broker acknowledged it.  A broker outage
loses nothing up to the bound; beyond it the oldest messages are dropped and
counted.  Reconnects back off exponentially with full jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiomqtt

from edgecfg.core.ids import DeviceId, ETag
from edgecfg.core.tree import Value
from edgecfg.errors import UsageError
from edgecfg.store.outbox import Outbox
from edgecfg.wire.senml import decode_senml, encode_senml_json

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "edgecfg"
DEFAULT_OUTBOX: Final = 100_000
BATCH: Final = 100
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 60.0
IDLE_WAKE_S: Final = 5.0
STOP_TIMEOUT_S: Final = 5.0
_BRIDGES: Final = itertools.count(1)  # numbers the bridges of one process


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where ``--mqtt`` points: host, port and topic prefix."""

    host: str
    port: int
    prefix: str


def parse_mqtt_url(text: str) -> BrokerAddress:
    """``mqtt://HOST[:PORT][/prefix]`` (port 1883, prefix ``edgecfg`` by default)."""
    parts = urlsplit(text)
    try:
        port = parts.port if parts.port is not None else 1883
    except ValueError:
        port = -1
    if parts.scheme != "mqtt" or not parts.hostname or not 0 < port < 65536:
        raise UsageError(
            f"--mqtt {text!r}: expected mqtt://HOST[:PORT][/prefix], e.g. "
            "mqtt://127.0.0.1:1883/edgecfg"
        )
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if parts.query or parts.fragment or "#" in text or "+" in prefix or "//" in prefix:
        raise UsageError(f"--mqtt {text!r}: the topic prefix may not hold '+', '#' or '//'")
    return BrokerAddress(parts.hostname, port, prefix)


class MqttBridge:
    """An :class:`~edgecfg.fleet.events.EventSink` publishing to one broker.

    :meth:`start` launches the publisher task; :meth:`stop` ends it (what is
    still queued stays in the outbox for the next start).
    """

    def __init__(
        self,
        broker: BrokerAddress,
        outbox: Path,
        *,
        max_messages: int = DEFAULT_OUTBOX,
        backoff_first_s: float = BACKOFF_FIRST_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        client_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.outbox = Outbox(outbox, max_messages=max_messages)
        self.backoff_first_s = backoff_first_s
        self.backoff_max_s = backoff_max_s
        # A broker ends the older of two sessions with one client id: every
        # gateway (and every test run) needs its own, or they take turns
        # kicking each other off and nothing gets published.
        self.client_id = client_id or (
            f"edgecfg-gateway-{socket.gethostname()}-{os.getpid()}-{next(_BRIDGES)}"
        )
        self.connected = False
        self.published = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- the EventSink side: never waits on the network ---------------------

    def telemetry(self, device: DeviceId, pack: bytes, *, now: float) -> None:
        """Queue the pack as received and as SenML-JSON."""
        del now
        topic = f"{self.broker.prefix}/tel/{device}"
        self._put(topic, pack)
        self._put(f"{topic}/json", encode_senml_json(decode_senml(pack)))

    def applied(self, device: DeviceId, etag: ETag | None, *, now: float) -> None:
        """Queue the version the device reported running."""
        document = {"device": device, "etag": None if etag is None else etag.hex(), "time": now}
        self._put(f"{self.broker.prefix}/events/applied/{device}", _json(document))

    def local_changes(self, device: DeviceId, outcome: Value, *, now: float) -> None:
        """Queue the merge outcome of the device's offline changes."""
        document = {"device": device, "outcome": outcome, "time": now}
        self._put(f"{self.broker.prefix}/events/local/{device}", _json(document))

    def _put(self, topic: str, payload: bytes) -> None:
        self.outbox.put(topic, payload)
        self._wake.set()

    # -- the publisher ---------------------------------------------------------

    def start(self) -> None:
        """Start publishing in the background (on the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="edgecfg mqtt bridge")

    async def stop(self) -> None:
        """Stop publishing and close the outbox."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # a disconnect from a broker that stopped answering must not hold
            # the gateway's shutdown: wait a bounded time, then go on
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
            if not done:
                log.warning("mqtt: the publisher did not stop within %.0f s", STOP_TIMEOUT_S)
        self.outbox.close()

    async def _run(self) -> None:
        delay = 0.0
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.client_id,
                    timeout=10.0,
                ) as client:
                    if not self.connected:
                        log.warning("mqtt: connected to %s:%d", self.broker.host, self.broker.port)
                    self.connected = True
                    delay = 0.0
                    await self._drain(client)
            except aiomqtt.MqttError as error:
                if self.connected or delay == 0.0:
                    log.warning(
                        "mqtt: broker %s:%d unreachable (%s); %d message(s) queued",
                        self.broker.host, self.broker.port, error, len(self.outbox),
                    )  # fmt: skip
                self.connected = False
            delay = min(self.backoff_max_s, max(self.backoff_first_s, 2 * delay))
            await asyncio.sleep(random.uniform(0, delay))  # full jitter

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the outbox, oldest first, for as long as the connection lives."""
        while True:
            self._wake.clear()
            batch = self.outbox.peek(BATCH)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
                continue
            for message in batch:
                await client.publish(message.topic, message.payload, qos=1)
            self.outbox.ack([message.id for message in batch])
            self.published += len(batch)


def _json(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, default=_jsonable).encode()


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
