"""Interop: libcoap's ``coap-client`` (4.3.x) against a running gateway (DESIGN §5).

Every test judges coap-client's ``-v 7`` log and the bytes it wrote with ``-o``
(see tests/gateway/coap_client.py for the log's format and the gateway thread).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import Layer, layer_from_parts, layer_to_document
from edgecfg.core.tree import Value, get
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import MemoryStore
from edgecfg.wire.cbor import Encoded, decode, encode
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.coap_client import (
    CLIENT,
    HOST,
    TIMEOUT_S,
    Pdu,
    Running,
    cbor_sequence,
    coap,
    parse_log,
)
from tests.gateway.helpers import free_udp_port, sensor
from tests.paths import SCHEMA

DEVICE: Final = DeviceId("dev-1")
EU: Final = LayerId("region/eu")
INTERVAL: Final = ("net", "uplink", "interval_s")
BLOCK: Final = 64

pytestmark = pytest.mark.skipif(
    shutil.which(CLIENT) is None,
    reason=f"{CLIENT} (Debian package libcoap3-bin) is not installed",
)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    """dev-1 and dev-2 (nbiot-sensor-r3 in region eu/west), a small region/eu layer."""
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0)
    # Proven from the start, so no test depends on which one runs first; coap-client's
    # answer to the Echo challenge is tested on a fresh gateway in test_amplification.py.
    gateway.guard.trust(HOST)
    fleet = gateway.fleet
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ("dev-1", "dev-2"):
        fleet.add_device(sensor(device, region="eu/west"))
        fleet.write_layer(
            LayerId(f"device/{device}"),
            layer_from_parts(sets={("device", "id"): device}),
            author="test",
            message="identity",
            now=2.0,
        )
    fleet.write_layer(
        EU, layer_from_parts(sets={INTERVAL: 900}), author="test", message="eu", now=2.0
    )
    server = Running(gateway, free_udp_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def current(running: Running, device: DeviceId = DEVICE) -> Encoded:
    return running.call(lambda: running.gateway.fleet.encoded(device))


# ---------------------------------------------------------------- tests


def test_blockwise_get_writes_the_canonical_config(running: Running, tmp_path: Path) -> None:
    expected = current(running)
    blocks = -(-len(expected.cbor) // BLOCK)
    assert blocks > 3, "the fixture config must span several 64-byte blocks"

    exchange = coap(running, tmp_path, "/cfg/dev-1", "-b", str(BLOCK))

    assert exchange.body == expected.cbor
    responses = exchange.responses
    assert [r.code for r in responses] == ["2.05"] * blocks
    numbers = [r.block2 for r in responses]
    assert numbers == [(n, n < blocks - 1, BLOCK) for n in range(blocks)]
    assert {r.etag for r in responses} == {"0x" + expected.etag.hex()}  # the same on every block
    assert {r.option("Content-Format") for r in responses} == {"application/cbor"}
    assert responses[0].size2 == len(expected.cbor)
    # each block was its own request from libcoap
    assert [r.block2 for r in exchange.requests("GET")] == [
        (n, False, BLOCK) for n in range(blocks)
    ]


def test_current_etag_gets_valid_without_payload(running: Running, tmp_path: Path) -> None:
    tag = current(running).etag

    exchange = coap(running, tmp_path, "/cfg/dev-1", "-O", f"4,0x{tag.hex()}")

    request = exchange.requests("GET")[0]
    assert request.etag == "0x" + tag.hex()  # -O 4,0x... really sent the ETag option
    response = exchange.only_response()
    assert response.code == "2.03"
    assert response.etag == "0x" + tag.hex()
    assert response.payload is None
    assert not exchange.body  # nothing written to -o


def test_stale_etag_gets_the_content(running: Running, tmp_path: Path) -> None:
    expected = current(running)

    exchange = coap(running, tmp_path, "/cfg/dev-1", "-O", "4,0x0000000000000000", "-b", "1024")

    assert {r.code for r in exchange.responses} == {"2.05"}
    assert exchange.body == expected.cbor


def test_a_single_block_can_be_fetched_for_resume(running: Running, tmp_path: Path) -> None:
    expected = current(running)

    exchange = coap(running, tmp_path, "/cfg/dev-1", "-b", f"3,{BLOCK}")

    # libcoap asks for block 3 only when told to start there
    assert exchange.body == expected.cbor[3 * BLOCK : 4 * BLOCK]
    response = exchange.only_response()
    assert response.code == "2.05"
    assert response.block2 == (3, True, BLOCK)
    assert response.etag == "0x" + expected.etag.hex()
    assert response.size2 is None  # Size2 only on block 0 unless asked for
    assert response.payload == f"binary data length {BLOCK}"

    # Size2 is on block 0, and on any block when the request carries Size2 (RFC 7959 §4)
    asked = coap(running, tmp_path, "/cfg/dev-1", "-b", f"3,{BLOCK}", "-O", "28,0x")
    request = asked.requests("GET")[0]
    assert request.size2 == 0
    assert asked.only_response().size2 == len(expected.cbor)
    assert asked.body == expected.cbor[3 * BLOCK : 4 * BLOCK]

    whole = coap(running, tmp_path, "/cfg/dev-1", "-b", f"0,{BLOCK}")
    first = whole.responses[0]
    assert first.block2 == (0, True, BLOCK)
    assert first.size2 == len(expected.cbor)
    assert all(r.size2 is None for r in whole.responses[1:])
    assert whole.body == expected.cbor


def test_the_last_block_and_past_the_end(running: Running, tmp_path: Path) -> None:
    expected = current(running)
    last = (len(expected.cbor) - 1) // BLOCK

    final = coap(running, tmp_path, "/cfg/dev-1", "-b", f"{last},{BLOCK}")
    assert final.only_response().block2 == (last, False, BLOCK)
    assert final.body == expected.cbor[last * BLOCK :]

    for number in (last + 1, 500):
        beyond = coap(running, tmp_path, "/cfg/dev-1", "-b", f"{number},{BLOCK}")
        response = beyond.only_response()
        assert response.code == "4.00", beyond.log
        assert response.text is not None and "beyond the end" in response.text
        assert f"4.00 {response.text}" in beyond.stderr
        assert not beyond.body


def test_fetch_of_paths_answers_a_map_of_subtrees(running: Running, tmp_path: Path) -> None:
    tree = current(running).tree
    request = tmp_path / "paths.cbor"
    request.write_bytes(encode(["net.uplink", "net.uplink.interval_s"]))

    exchange = coap(running, tmp_path, "/cfg/dev-1", "-m", "fetch", "-t", "60", "-f", str(request))

    sent = exchange.requests("FETCH")[0]
    assert sent.option("Content-Format") == "application/cbor"
    response = exchange.only_response()
    assert response.code == "2.05"
    assert response.option("Content-Format") == "application/cbor"
    assert exchange.body is not None
    answer = decode(exchange.body)
    assert answer == {
        "net.uplink": get(tree, ("net", "uplink")),
        "net.uplink.interval_s": get(tree, INTERVAL),
    }
    assert exchange.body == encode(answer)  # canonical


def test_fetch_answer_is_cut_in_blocks(running: Running, tmp_path: Path) -> None:
    tree = current(running).tree
    request = tmp_path / "paths.cbor"
    request.write_bytes(encode(["net", "power"]))
    expected = encode({"net": tree["net"], "power": tree["power"]})
    assert len(expected) > BLOCK

    exchange = coap(
        running, tmp_path, "/cfg/dev-1", "-m", "fetch", "-t", "60", "-f", str(request),
        "-b", str(BLOCK),
    )  # fmt: skip

    first = exchange.responses[0]
    assert first.code == "2.05"
    assert first.block2 == (0, True, BLOCK)
    assert first.size2 == len(expected)
    assert exchange.body is not None
    continuations = exchange.requests("FETCH")[1:]
    if continuations and continuations[0].payload is None:
        # libcoap 4.3.1 sends the Block2 continuation of a FETCH without the request
        # body (RFC 8132 §2.3.2 wants it repeated; fixed in libcoap 4.3.4, PR #1234),
        # so the gateway cannot know what is asked: 4.00, and -o holds block 0 only.
        assert exchange.responses[1].code == "4.00"
        assert exchange.body == expected[:BLOCK]
    else:
        assert {r.code for r in exchange.responses} == {"2.05"}
        assert exchange.body == expected


def test_fetch_of_an_unknown_path_is_4_04(running: Running, tmp_path: Path) -> None:
    request = tmp_path / "paths.cbor"
    request.write_bytes(encode(["net.nowhere"]))

    exchange = coap(running, tmp_path, "/cfg/dev-1", "-m", "fetch", "-t", "60", "-f", str(request))

    response = exchange.only_response()
    assert response.code == "4.04"
    assert response.text is not None and "net.nowhere" in response.text


def _write(running: Running, layer: Layer) -> tuple[ETag, bytes]:
    """Replace region/eu on the gateway loop and notify; the new ETag and document."""

    def write() -> tuple[ETag, bytes]:
        fleet = running.gateway.fleet
        fleet.write_layer(
            EU, layer, author="test", message="observe", now=time.time(), replace=True
        )
        running.gateway.layer_changed(EU)
        head = fleet.head(EU)
        assert head is not None
        return head.content, encode(layer_to_document(fleet.layer(EU)))

    return running.call(write)


def _wait_for(
    log: Path, what: str, found: Callable[[Pdu], bool], process: subprocess.Popen[bytes]
) -> None:
    """Poll the running coap-client's log (libcoap flushes each line) for a PDU."""
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if any(found(p) for p in parse_log(log.read_text("utf-8", "replace"))):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"coap-client never logged {what}:\n{log.read_text('utf-8', 'replace')}")


def test_observing_a_group_gets_block0_notifications_and_the_rest(
    running: Running, tmp_path: Path
) -> None:
    log = tmp_path / "observe.log"
    output = tmp_path / "observe.bin"
    command = [
        CLIENT, "-v", "7", "-B", "10", "-b", str(BLOCK), "-s", "4", "-o", str(output),
        running.uri("/grp/region/eu"),
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            _wait_for(  # the registration's answer, before the first change
                log, "the observe ACK", lambda p: p.is_response and "Observe" in p.options, process
            )
            small, small_doc = _write(running, layer_from_parts(sets={INTERVAL: 1200}))
            assert len(small_doc) <= BLOCK
            _wait_for(
                log, "the first notification", lambda p: p.etag == "0x" + small.hex(), process
            )
            big_layer = layer_from_parts(
                sets={
                    INTERVAL: 1800,
                    ("device", "name"): "a-rather-long-name-that-grows-the-layer-document",
                    ("net", "cell", "apn"): "iot.example.org",
                }
            )
            big, big_doc = _write(running, big_layer)
            assert len(big_doc) > BLOCK
            process.wait(timeout=TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
    text = log.read_text("utf-8", "replace")
    pdus = parse_log(text)

    # server-initiated notifications: 2.05 with Observe, not the ACK to the registration
    notifications = [
        p for p in pdus if p.code == "2.05" and p.type in ("CON", "NON") and "Observe" in p.options
    ]
    assert len(notifications) >= 2, text
    for notification in notifications:
        assert notification.block2 is not None and notification.block2[0] == 0
        assert notification.etag is not None
        assert notification.size2 is not None
    assert notifications[-2].etag == "0x" + small.hex()
    assert notifications[-2].size2 == len(small_doc)
    assert notifications[-1].etag == "0x" + big.hex()
    assert notifications[-1].size2 == len(big_doc)
    assert notifications[-1].block2 == (0, True, BLOCK)

    # libcoap fetched the rest of the big one with plain Block2 GETs under the same ETag
    rest = [
        p
        for p in pdus
        if p.code == "2.05" and p.type == "ACK" and p.etag == "0x" + big.hex() and p.block2
    ]
    assert {p.block2[0] for p in rest if p.block2} == set(range(1, -(-len(big_doc) // BLOCK)))

    # -o got every reassembled body in turn: the registration's, then each notification's
    assert output.exists(), text
    bodies = cbor_sequence(output.read_bytes())
    assert len(bodies) >= 3
    assert encode(bodies[-2]) == small_doc
    assert encode(bodies[-1]) == big_doc
    assert bodies[-1] == layer_to_document(big_layer)


def test_senml_telemetry_is_stored(running: Running, tmp_path: Path) -> None:
    pack = encode_senml([Record("temp", 21.5, "Cel", 1.7e9), Record("batt", 3.1, "V", 1.7e9 + 1)])
    payload = tmp_path / "pack.cbor"
    payload.write_bytes(pack)
    store = running.gateway.fleet.store
    before = running.call(lambda: len(store.telemetry(DEVICE)))

    exchange = coap(running, tmp_path, "/tel/dev-1", "-m", "post", "-t", "112", "-f", str(payload))

    sent = exchange.requests("POST")[0]
    assert sent.option("Content-Format") == "application/senml+cbor"
    response = exchange.only_response()
    assert response.code == "2.04", exchange.log
    assert response.payload is None
    stored = running.call(lambda: store.telemetry(DEVICE))
    assert len(stored) == before + 1
    assert pack in [blob for _, blob in stored]


def test_malformed_senml_is_4_00(running: Running, tmp_path: Path) -> None:
    exchange = coap(running, tmp_path, "/tel/dev-1", "-m", "post", "-t", "112", "-e", "hello")

    response = exchange.only_response()
    assert response.code == "4.00"
    assert response.text is not None and "SenML" in response.text


def test_unknown_device_is_4_04_naming_it(running: Running, tmp_path: Path) -> None:
    exchange = coap(running, tmp_path, "/cfg/nobody")

    response = exchange.only_response()
    assert response.code == "4.04"
    assert response.text is not None and "nobody" in response.text
    assert "4.04" in exchange.stderr and "nobody" in exchange.stderr
    assert not exchange.body


_LINK = re.compile(r"<(?P<target>[^>]*)>(?P<attributes>(?:;[^,;]+)*)")


def test_well_known_core_lists_the_resources(running: Running, tmp_path: Path) -> None:
    exchange = coap(running, tmp_path, "/.well-known/core")

    response = exchange.only_response()
    assert response.code == "2.05"
    assert response.option("Content-Format") == "application/link-format"
    assert exchange.body is not None
    links: dict[str, list[str]] = {}
    for match in _LINK.finditer(exchange.body.decode("utf-8")):
        links[match["target"]] = [a for a in match["attributes"].split(";") if a]
    for name in ("cfg", "state", "tel", "grp", "dev"):
        assert f'rt="edgecfg.{name}"' in links.get(f"/{name}", []), links
    assert "obs" in links["/cfg"]
    assert "obs" in links["/grp"]


def test_a_rollout_is_read_and_paused_with_coap_client(running: Running, tmp_path: Path) -> None:
    plan = {"change": {"net.uplink.interval_s": 1200}, "target": "region/eu",
            "stages": ["50%", "100%"]}  # fmt: skip
    rollouts = running.gateway.rollouts
    running.call(lambda: rollouts.start(plan, now=10.0, author="ops", rollout_id="cc1"))

    shown = coap(running, tmp_path, "/rollout/cc1")
    response = shown.only_response()
    assert response.code == "2.05" and shown.body is not None, shown.log
    status = decode(shown.body)
    assert isinstance(status, dict) and status["phase"] == "running"

    body = tmp_path / "pause.cbor"
    body.write_bytes(encode({"action": "pause", "reason": "maintenance window"}))
    paused = coap(running, tmp_path, "/rollout/cc1", "-m", "post", "-t", "60", "-f", str(body))
    assert paused.only_response().code == "2.04", paused.log
    assert paused.body is not None and decode(paused.body)["phase"] == "paused"  # type: ignore[index]
    refused = coap(running, tmp_path, "/rollout/cc1", "-m", "post", "-t", "60", "-e", "x")
    assert refused.only_response().code == "4.00"


def test_a_large_state_answer_comes_block_wise_to_coap_client(
    running: Running, tmp_path: Path
) -> None:
    applied: Value = bytes(current(running).etag)
    journal: list[Value] = [
        [n, f"no.such.setting_{n:03d}", [1_000 + n, 0, "dev-1"], "field test", n]
        for n in range(1, 41)
    ]
    report = tmp_path / "report.cbor"
    report.write_bytes(encode({"applied": applied, "journal": journal, "base": applied}))

    exchange = coap(running, tmp_path, "/state/dev-1", "-m", "post", "-t", "60",
                    "-f", str(report), "-b", "256")  # fmt: skip

    # the report goes up block-wise (2.31 Continue), its answer comes down so
    answers = [r for r in exchange.responses if r.code != "2.31"]
    first = answers[0]
    assert first.code == "2.04", exchange.log
    assert first.block2 is not None and first.block2[0] == 0 and first.block2[1]
    assert first.size2 is not None and first.size2 > 1024
    # every later block came from the answer kept for this client (libcoap
    # asks with empty POSTs), so the body is one whole answer, merged once
    assert {r.code for r in answers} == {"2.04"}, exchange.log
    assert len({r.etag for r in answers}) == 1
    assert exchange.body is not None and len(exchange.body) == first.size2
    answer = decode(exchange.body)
    assert isinstance(answer, dict)
    local = answer["local"]
    assert isinstance(local, dict) and local["ack"] == 40
    rejected = local["rejected"]
    assert isinstance(rejected, list) and len(rejected) == 40
