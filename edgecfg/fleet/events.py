"""What the gateway tells the outside world as it serves: telemetry as
received and sync events.  The sync service calls an :class:`EventSink`; the
MQTT bridge (:mod:`edgecfg.gateway.mqtt`) is one, :data:`NO_EVENTS` the
default.  A sink must never block serving on the network: it queues.
"""

from __future__ import annotations

from typing import Protocol

from edgecfg.core.ids import DeviceId, ETag
from edgecfg.core.tree import Value


class EventSink(Protocol):
    """Receives the gateway's events, in the order they happen."""

    def telemetry(self, device: DeviceId, pack: bytes, *, now: float) -> None:
        """A SenML-CBOR pack the device posted (already validated and stored)."""
        ...

    def applied(self, device: DeviceId, etag: ETag | None, *, now: float) -> None:
        """A state report: the configuration version the device runs now."""
        ...

    def local_changes(self, device: DeviceId, outcome: Value, *, now: float) -> None:
        """The merge outcome of a device's offline changes (accepted, refused)."""
        ...


class _NoEvents:
    """The sink of a gateway without a bridge: drops everything."""

    def telemetry(self, device: DeviceId, pack: bytes, *, now: float) -> None:
        del device, pack, now

    def applied(self, device: DeviceId, etag: ETag | None, *, now: float) -> None:
        del device, etag, now

    def local_changes(self, device: DeviceId, outcome: Value, *, now: float) -> None:
        del device, outcome, now


NO_EVENTS: EventSink = _NoEvents()
