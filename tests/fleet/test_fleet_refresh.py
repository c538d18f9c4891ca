"""A serving fleet picks up other writers' changes from the change log, at a
cost proportional to the changes, never to the fleet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Hierarchy, layer_from_parts
from edgecfg.core.path import parse_path
from edgecfg.errors import NotFound
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import DeviceRecord, MemoryStore, SQLiteStore, Store

INTERVAL = parse_path("net.uplink.interval_s")


class CountingStore:
    """A store that counts the reads a refresh makes."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attribute(*args, **kwargs)

        return counted


def device(id: str, region: str) -> DeviceRecord:
    return DeviceRecord(DeviceId(id), {"region": region})


def write(fleet: Fleet, layer: str, value: int) -> None:
    fleet.write_layer(
        LayerId(layer), layer_from_parts(sets={INTERVAL: value}), author="t", message="", now=1.0
    )


def interval(fleet: Fleet, id: str) -> object:
    return fleet.resolve(DeviceId(id)).tree["net"]["uplink"]["interval_s"]  # type: ignore[index]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Fleet, Fleet]]:
    """A writer (the CLI) and a server (the gateway) on one SQLite file."""
    with SQLiteStore(tmp_path / "f.db") as writes, SQLiteStore(tmp_path / "f.db") as serves:
        writer = Fleet(writes)
        for number, region in enumerate(["eu/west", "eu/north", "us/east"]):
            writer.add_device(device(f"d{number}", region))
        write(writer, "region/eu", 600)
        server = Fleet(serves)
        server.members()  # a warm gateway holds every device
        yield writer, server


def test_nothing_changed_is_an_empty_refresh(pair: tuple[Fleet, Fleet]) -> None:
    _, server = pair
    assert not server.refresh()


def test_a_layer_written_elsewhere_is_served_and_reported(pair: tuple[Fleet, Fleet]) -> None:
    writer, server = pair
    assert interval(server, "d0") == 600
    write(writer, "region/eu", 900)
    changes = server.refresh()
    assert changes.layers == {"region/eu"}
    assert interval(server, "d0") == 900
    assert not server.refresh()  # seen once


def test_a_value_written_elsewhere_as_an_equal_number_of_another_type_is_a_change(
    pair: tuple[Fleet, Fleet],
) -> None:
    """true and 1 compare equal in Python, not in CBOR: the layer changed."""
    writer, server = pair
    write(writer, "region/eu", True)
    assert server.refresh().layers == {"region/eu"}
    write(writer, "region/eu", 1)
    assert server.refresh().layers == {"region/eu"}
    assert interval(server, "d0") == 1
    assert type(interval(server, "d0")) is int


def test_a_membership_changed_elsewhere_is_served_and_reported(pair: tuple[Fleet, Fleet]) -> None:
    writer, server = pair
    write(writer, "region/us", 1200)
    server.refresh()
    assert interval(server, "d0") == 600
    writer.add_device(device("d0", "us/west"))  # `device set d0 --group region=us/west`
    changes = server.refresh()
    assert changes.devices == {"d0"}
    assert interval(server, "d0") == 1200
    assert server.reached_by(LayerId("region/us")) == [DeviceId("d0"), DeviceId("d2")]


def test_devices_registered_and_deleted_elsewhere(pair: tuple[Fleet, Fleet]) -> None:
    writer, server = pair
    writer.add_device(device("d9", "eu/south"))
    writer.store.delete_device(DeviceId("d1"))
    changes = server.refresh()
    assert changes.devices == {"d9", "d1"}
    assert interval(server, "d9") == 600
    assert DeviceId("d1") not in server.reached_by(LayerId("region/eu"))
    with pytest.raises(NotFound):
        server.device(DeviceId("d1"))


def test_a_new_dimension_order_reloads_everything(pair: tuple[Fleet, Fleet]) -> None:
    writer, server = pair
    writer.set_hierarchy(Hierarchy((("hardware",), ("region",), ("function",))))
    changes = server.refresh()
    assert changes.everything
    assert server.hierarchy.ranks == (("hardware",), ("region",), ("function",))


def test_the_servers_own_writes_change_nothing_on_refresh(pair: tuple[Fleet, Fleet]) -> None:
    _, server = pair
    write(server, "region/eu", 700)
    assert server.refresh().layers == frozenset()


def test_a_refresh_reads_only_what_changed_not_the_fleet() -> None:
    store = MemoryStore()
    writer = Fleet(store)
    for number in range(200):
        writer.add_device(device(f"d{number:03d}", f"eu/site-{number % 20}"))
    for site in range(20):
        write(writer, f"region/eu/site-{site}", 600 + site)
    counting = CountingStore(store)
    server = Fleet(counting)  # type: ignore[arg-type]
    server.members()
    counting.calls.clear()
    assert not server.refresh()
    assert counting.calls == {"changes_since": 1}  # one indexed read when idle
    write(writer, "region/eu/site-3", 999)
    writer.add_device(device("d005", "eu/site-4"))
    counting.calls.clear()
    changes = server.refresh()
    assert changes.layers == {"region/eu/site-3"}
    assert changes.devices == {"d005"}
    assert counting.calls == {
        "changes_since": 1,
        "get_layer": 1,
        "get_blob": 1,
        "get_device": 1,
    }


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["layer", "move", "add", "delete"]),
            st.integers(0, 5),
            st.integers(10, 5000),
        ),
        max_size=12,
    )
)
def test_after_any_writes_the_server_serves_what_a_fresh_fleet_resolves(
    writes: list[tuple[str, int, int]],
) -> None:
    store = MemoryStore()
    writer = Fleet(store)
    for number in range(4):
        writer.add_device(device(f"d{number}", "eu/west"))
    server = Fleet(store)
    server.members()
    for kind, number, value in writes:
        regions = ["eu/west", "eu/north", "us/east", "us"]
        if kind == "layer":
            write(writer, f"region/{regions[number % 4]}", value)
        elif kind in ("move", "add"):
            writer.add_device(device(f"d{number}", regions[value % 4]))
        elif store.has_device(DeviceId(f"d{number}")):
            writer.store.delete_device(DeviceId(f"d{number}"))
        server.refresh()
        fresh = Fleet(store)
        for record in store.iter_devices():
            assert server.encoded(record.id).etag == fresh.encoded(record.id).etag


async def test_an_observer_is_notified_when_the_cli_moves_its_device(tmp_path: Path) -> None:
    """End to end: a running gateway, the CLI's write in another store on the
    same file, the device's observation notified with its new config."""
    db = tmp_path / "fleet.db"
    with SQLiteStore(db) as writes, SQLiteStore(db) as serves:
        writer = Fleet(writes)
        writer.add_device(device("dev-1", "eu/west"))
        write(writer, "region/us", 1200)
        gateway = Gateway(serves, policy=InsecurePolicy(), refresh_s=0.05)
        gateway.guard.trust("127.0.0.1")
        await gateway.start("127.0.0.1", 0)
        client = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            message = aiocoap.Message(code=Code.GET, uri=gateway.uri + "/cfg/dev-1", observe=0)
            request = client.request(message)
            first = await request.response
            observation = request.observation
            assert observation is not None
            notifications = aiter(observation)
            writer.add_device(device("dev-1", "us/east"))  # `device set dev-1 --group ...`
            note = await asyncio.wait_for(anext(notifications), 60)
            assert note.opt.etag != first.opt.etag
            assert note.opt.etag == gateway.fleet.encoded(DeviceId("dev-1")).etag
            assert interval(gateway.fleet, "dev-1") == 1200
            observation.cancel()
        finally:
            await client.shutdown()
            await gateway.stop()
