"""Every client mistake is a 4.xx, storage failures are 5.03 (issue 20).

A gateway on a real SQLite file (the big numbers below overflow SQLite's
integers, which the in-memory store never sees), real datagrams on loopback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.core.ids import DeviceId
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import SQLiteStore
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.conftest import SCHEMA, free_udp_port, sensor
from tests.gateway.test_coap import ask

CBOR, SENML = 60, 112


@pytest.fixture
async def stored_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    (tmp_path / "secret-folder").mkdir()
    store = SQLiteStore(tmp_path / "secret-folder" / "fleet.db")
    gateway = Gateway(store, policy=InsecurePolicy(), refresh_s=0)
    gateway.guard.trust("127.0.0.1")
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ("dev-1", "dev-2"):
        gateway.fleet.add_device(sensor(device))
    await gateway.start("127.0.0.1", free_udp_port())
    try:
        yield gateway
    finally:
        await gateway.stop()
        store.close()


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "CRITICAL"]


@pytest.mark.parametrize(
    "version",
    ["99999999999999999999", str(2**63), str(2**31), "²", "١٢", "1" * 200],
    ids=["20-digits", "2^63", "2^31", "superscript-two", "arabic-indic", "200-digits"],
)
async def test_an_absurd_schema_version_in_a_query_is_4_00(
    stored_gateway: Gateway,
    client: aiocoap.Context,
    version: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = await ask(client, stored_gateway, Code.GET, "/cfg/dev-1", uri_query=(f"sv={version}",))
    assert reply.code == Code.BAD_REQUEST, reply.payload
    assert b"schema version" in reply.payload
    no_tracebacks(caplog)
    fine = await ask(client, stored_gateway, Code.GET, "/cfg/dev-1", uri_query=("sv=1",))
    assert fine.code == Code.CONTENT


@pytest.mark.parametrize("version", [2**63, 2**64 - 1, -(2**63) - 1, 2**31, -1])
async def test_an_absurd_schema_version_in_a_report_is_4_00_and_records_nothing(
    stored_gateway: Gateway,
    client: aiocoap.Context,
    version: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = stored_gateway.fleet.store.get_device(DeviceId("dev-1"))
    body = cbor2.dumps({"agent": "9.9.9", "schema": version})
    reply = await ask(client, stored_gateway, Code.POST, "/state/dev-1", payload=body,
                      content_format=CBOR)  # fmt: skip
    assert reply.code == Code.BAD_REQUEST, reply.payload
    assert b"'schema'" in reply.payload
    assert stored_gateway.fleet.store.get_device(DeviceId("dev-1")) == before
    no_tracebacks(caplog)


def fill_the_disk(gateway: Gateway) -> None:
    """Make the database file full, as a full disk does (SQLITE_FULL)."""
    store = gateway.fleet.store
    assert isinstance(store, SQLiteStore)
    with sqlite3.connect(store.path) as other:
        pages = other.execute("PRAGMA page_count").fetchone()[0]
    connection = store._connection  # pyright: ignore[reportPrivateUsage]
    assert connection is not None
    connection.execute(f"PRAGMA max_page_count = {pages}")


async def test_a_storage_failure_is_5_03_with_max_age_and_no_path(
    stored_gateway: Gateway,
    client: aiocoap.Context,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert (await ask(client, stored_gateway, Code.GET, "/cfg/dev-1")).code == Code.CONTENT
    fill_the_disk(stored_gateway)
    body = encode_senml([Record(f"blob{i}", "x" * 900) for i in range(30)])
    reply = await ask(client, stored_gateway, Code.POST, "/tel/dev-1", payload=body,
                      content_format=SENML, blockwise=True)  # fmt: skip
    assert reply.code == Code.SERVICE_UNAVAILABLE, reply.payload
    assert reply.opt.max_age is not None and reply.opt.max_age > 0
    assert b"secret-folder" not in reply.payload and b"/" not in reply.payload
    assert b"storage" in reply.payload
    logged = [r.getMessage() for r in caplog.records if "storage failure" in r.getMessage()]
    assert logged and "secret-folder" in logged[0]  # the operator gets the path
    no_tracebacks(caplog)
    # reads of what is stored still work
    fine = await ask(client, stored_gateway, Code.GET, "/cfg/dev-1")
    assert fine.code == Code.CONTENT
