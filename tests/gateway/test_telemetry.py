"""Telemetry through a real gateway on loopback (issue 14): SenML-CBOR and
SenML-JSON posted to /tel/{dev}, ingested by the gateway's worker into a
SQLite file, then read by ``edgecfg telemetry show`` from that file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.cli.main import main
from edgecfg.core.ids import DeviceId
from edgecfg.gateway.server import Gateway
from edgecfg.store import SQLiteStore
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml, encode_senml_json
from tests.gateway.helpers import ask, started_gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway on a SQLite file (so ingest runs in its worker thread)."""
    store = SQLiteStore(tmp_path / "fleet.db")
    try:
        async with started_gateway(store) as gateway:
            yield gateway
    finally:
        store.close()


def show(db: Path, target: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["telemetry", "show", target, "--json", "--db", str(db)]) == 0
    return json.loads(capsys.readouterr().out)


async def test_cbor_and_json_packs_reach_telemetry_show(
    gateway: Gateway, client: aiocoap.Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = [
        Record("rsrp", -97.0, "dBm", -60.0),
        Record("battery", 81.0, "%EL", -60.0),
        Record("syncs", 10.0, None, -60.0),
        Record("humidity", 40.0, "%RH", -60.0),
    ]
    second = [Record("rsrp", -101.0, "dBm", 0.0), Record("battery", 80.0, "%EL", 0.0),
              Record("syncs", 12.0, None, 0.0), Record("ce_level", 1.0, "/", 0.0)]  # fmt: skip
    cbor = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=encode_senml(first),
                     content_format=ContentFormat.SENML_CBOR)  # fmt: skip
    text = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=encode_senml_json(second),
                     content_format=ContentFormat.SENML_JSON)  # fmt: skip
    assert (cbor.code, text.code) == (Code.CHANGED, Code.CHANGED)
    # both stored raw, as SenML-CBOR (what rollouts and the MQTT bridge read)
    assert len(gateway.fleet.store.telemetry(DeviceId("dev-1"))) == 2

    device = show(tmp_path / "fleet.db", "dev-1", capsys)
    assert device["link"] == {"rsrp": {"count": 2, "sum": -198.0, "min": -101.0, "mean": -99.0,
                                       "max": -97.0, "last": -101.0}}  # fmt: skip
    assert device["distribution"] == {"rsrp@-110": 1, "rsrp@-100": 1}
    assert device["coverage_class"] == {"last": 1.0, "max": 1.0, "mean": 1.0}
    assert device["syncs"] == 2.0  # a counter: the increase from 10 to 12
    assert device["battery"]["battery"]["last"] == 80.0  # type: ignore[index]
    assert "humidity" in device["series"]  # type: ignore[operator]  # unknown, kept
    group = show(tmp_path / "fleet.db", "region/eu", capsys)
    assert group["link"]["rsrp"]["count"] == 2  # type: ignore[index]
    assert group["degraded"] == {"count": 0, "devices": [], "found": 0.0}


async def test_other_content_formats_and_bad_packs_are_refused_and_not_stored(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    plain_json = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=b"[]",
                           content_format=ContentFormat.CBOR)  # fmt: skip
    assert plain_json.code == Code.UNSUPPORTED_CONTENT_FORMAT
    assert b"112" in plain_json.payload
    bad = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=b'[{"n":"a","v":"x"}]',
                    content_format=ContentFormat.SENML_JSON)  # fmt: skip
    assert bad.code == Code.BAD_REQUEST
    assert b"record 0" in bad.payload
    assert gateway.fleet.store.telemetry(DeviceId("dev-1")) == []


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30_000,  # nesting deeper than the parser's stack
        b'[{"n":"a","v":1e999}]',  # infinity
        b'[{"n":"a","v":' + b"9" * 5000 + b"}]",  # an integer too long to convert
        b'[{"n":"a","v":1,"n":"b"}]',  # a label twice
        b'[{"bn":"x","bt":1e300,"t":1e300,"v":1}]',  # a time past 2**34
        '[{"n":"\u00e9","v":1}]'.encode("latin-1"),  # not UTF-8
    ],
    ids=["deep", "infinite", "long-int", "duplicate", "far-time", "latin-1"],
)
async def test_hostile_senml_json_is_4_00_and_the_gateway_keeps_serving(
    gateway: Gateway, client: aiocoap.Context, body: bytes
) -> None:
    answer = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=body, blockwise=True,
                       content_format=ContentFormat.SENML_JSON)  # fmt: skip
    assert answer.code == Code.BAD_REQUEST, answer.payload
    fine = await ask(client, gateway, Code.POST, "/tel/dev-1",
                     payload=encode_senml_json([Record("rsrp", -90.0, "dBm", 0.0)]),
                     content_format=ContentFormat.SENML_JSON)  # fmt: skip
    assert fine.code == Code.CHANGED
