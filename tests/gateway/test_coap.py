"""The gateway over real CoAP on loopback: resources, codes, Block2/Block1, observe."""

from __future__ import annotations

import asyncio

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts, layer_to_document
from edgecfg.core.tree import is_map
from edgecfg.gateway.server import Gateway
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.delta import apply_delta_encoded
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.conftest import SCHEMA_V2, sensor

INTERVAL = ("net", "uplink", "interval_s")


async def ask(
    client: aiocoap.Context,
    gateway: Gateway,
    code: Code,
    path: str,
    *,
    payload: bytes = b"",
    block2: tuple[int, int] | None = None,
    etags: tuple[bytes, ...] = (),
    blockwise: bool = False,
    **options: object,
) -> aiocoap.Message:
    message = aiocoap.Message(code=code, uri=gateway.uri + path, payload=payload)
    if block2 is not None:
        message.opt.block2 = BlockOption.BlockwiseTuple(block2[0], False, block2[1])
    if etags:
        message.opt.etags = etags
    for name, value in options.items():
        setattr(message.opt, name, value)
    return await client.request(message, handle_blockwise=blockwise).response


def edit(gateway: Gateway, layer: str, value: int) -> None:
    gateway.fleet.write_layer(
        LayerId(layer), layer_from_parts(sets={INTERVAL: value}), author="t", message="", now=2
    )
    gateway.layer_changed(LayerId(layer))


async def test_get_config_carries_etag_and_cuts_blocks(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    expected = gateway.fleet.encoded(DeviceId("dev-1"))
    first = await ask(client, gateway, Code.GET, "/cfg/dev-1")
    assert first.code == Code.CONTENT
    assert first.opt.etag == expected.etag
    assert first.opt.content_format == 60
    assert first.opt.block2 is not None and first.opt.block2.more
    assert first.opt.size2 == len(expected.cbor)
    whole = await ask(client, gateway, Code.GET, "/cfg/dev-1", blockwise=True)
    assert whole.payload == expected.cbor


async def test_any_block_can_be_fetched_by_a_new_peer(gateway: Gateway) -> None:
    expected = gateway.fleet.encoded(DeviceId("dev-1")).cbor
    fresh = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:  # a peer that never asked for block 0 (a device resuming after a reboot)
        reply = await ask(fresh, gateway, Code.GET, "/cfg/dev-1", block2=(5, 2))
    finally:
        await fresh.shutdown()
    assert reply.code == Code.CONTENT
    assert reply.payload == expected[5 * 64 : 6 * 64]
    assert reply.opt.etag == gateway.fleet.etag(DeviceId("dev-1"))  # RFC 7959 §2.4


async def test_block_past_the_end_is_bad_request(gateway: Gateway, client: aiocoap.Context) -> None:
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1", block2=(999, 2))
    assert reply.code == Code.BAD_REQUEST
    assert b"beyond the end" in reply.payload


async def test_current_etag_is_answered_valid_without_payload(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    tag = gateway.fleet.etag(DeviceId("dev-1"))
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1", etags=(tag,))
    assert reply.code == Code.VALID
    assert reply.payload == b""
    assert reply.opt.etag == tag
    reply = await ask(client, gateway, Code.GET, f"/cfg/dev-1?from={tag.hex()}")
    assert reply.code == Code.VALID


async def test_a_stale_request_etag_names_the_base_of_a_delta(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    before = gateway.fleet.encoded(DeviceId("dev-1"))
    await ask(client, gateway, Code.GET, "/cfg/dev-1", blockwise=True)
    edit(gateway, "region/eu", 700)
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1", etags=(before.etag,))
    assert reply.code == Code.CONTENT
    assert reply.opt.content_format == ContentFormat.DELTA
    assert apply_delta_encoded(before, reply.payload).etag == reply.opt.etag


async def test_from_a_known_etag_serves_a_delta(gateway: Gateway, client: aiocoap.Context) -> None:
    before = gateway.fleet.encoded(DeviceId("dev-1"))
    await ask(client, gateway, Code.GET, "/cfg/dev-1", blockwise=True)  # the gateway serves it
    edit(gateway, "region/eu", 900)
    after = gateway.fleet.encoded(DeviceId("dev-1"))
    reply = await ask(client, gateway, Code.GET, f"/cfg/dev-1?from={before.etag.hex()}")
    assert reply.code == Code.CONTENT
    assert reply.opt.content_format == ContentFormat.DELTA
    assert reply.opt.etag == after.etag
    assert len(reply.payload) < 20
    assert apply_delta_encoded(before, reply.payload).etag == after.etag
    again = await ask(client, gateway, Code.GET, f"/cfg/dev-1?from={before.etag.hex()}")
    assert again.payload == reply.payload  # deterministic bytes: Block2 resume works


async def test_unknown_base_gets_the_full_config(gateway: Gateway, client: aiocoap.Context) -> None:
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1?from=0011223344556677", blockwise=True)
    assert reply.opt.content_format == 60
    assert reply.payload == gateway.fleet.encoded(DeviceId("dev-1")).cbor


async def test_critical_class_only(gateway: Gateway, client: aiocoap.Context) -> None:
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1?prio=critical", blockwise=True)
    subset = decode(reply.payload)
    schema = gateway.fleet.schema
    assert schema is not None
    from edgecfg.core.tree import flatten

    leaves = flatten(subset)  # type: ignore[arg-type]
    assert leaves
    assert all(
        (spec := schema.spec(path)) is not None and spec.priority == "critical" for path in leaves
    )


async def test_subtree_and_fetch_of_paths(gateway: Gateway, client: aiocoap.Context) -> None:
    tree = gateway.fleet.resolve(DeviceId("dev-1")).tree
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1/net/uplink")
    assert decode(reply.payload) == tree["net"]["uplink"]  # type: ignore[index]
    body = encode(["net.uplink.interval_s", "log.level"])
    reply = await ask(client, gateway, Code.FETCH, "/cfg/dev-1", payload=body, content_format=60)
    assert reply.code == Code.CONTENT
    assert decode(reply.payload) == {
        "net.uplink.interval_s": tree["net"]["uplink"]["interval_s"],  # type: ignore[index]
        "log.level": tree["log"]["level"],  # type: ignore[index]
    }
    missing = await ask(client, gateway, Code.FETCH, "/cfg/dev-1", payload=encode(["no.such"]))
    assert missing.code == Code.NOT_FOUND
    assert b"no.such" in missing.payload


@pytest.mark.parametrize(
    ("path", "code", "text"),
    [
        ("/cfg/nobody", Code.NOT_FOUND, b"no such device: nobody"),
        ("/cfg/dev-1/no/such", Code.NOT_FOUND, b"no.such"),
        ("/cfg/dev-1?from=zz", Code.BAD_REQUEST, b"not hexadecimal"),
        ("/cfg/dev-1?prio=urgent", Code.BAD_REQUEST, b"prio=critical"),
        ("/cfg/dev-1?color=red", Code.BAD_REQUEST, b"unknown query keys"),
        ("/grp/planet/mars", Code.BAD_REQUEST, b"unknown dimension"),
    ],
)
async def test_client_mistakes_get_4xx_with_a_diagnostic(
    gateway: Gateway, client: aiocoap.Context, path: str, code: Code, text: bytes
) -> None:
    reply = await ask(client, gateway, Code.GET, path)
    assert reply.code == code
    assert text in reply.payload


async def test_unsupported_method_is_4_05(gateway: Gateway, client: aiocoap.Context) -> None:
    reply = await ask(client, gateway, Code.DELETE, "/cfg/dev-1")
    assert reply.code == Code.METHOD_NOT_ALLOWED


async def test_state_report_records_the_applied_etag(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    tag = gateway.fleet.etag(DeviceId("dev-1"))
    body = encode({"applied": tag, "agent": "1.0.0"})
    reply = await ask(client, gateway, Code.POST, "/state/dev-1", payload=body)
    assert (reply.code, reply.payload) == (Code.CHANGED, b"")  # current: nothing to add
    assert gateway.fleet.store.get_device(DeviceId("dev-1")).applied_etag == tag
    old = encode({"applied": b"\x00" * 8})
    behind = await ask(client, gateway, Code.POST, "/state/dev-1", payload=old)
    assert decode(behind.payload) == {"etag": tag, "current": False}
    assert behind.opt.etag == tag
    bad = await ask(client, gateway, Code.POST, "/state/dev-1", payload=b"\xff")
    assert bad.code == Code.BAD_REQUEST


async def test_telemetry_piggyback(gateway: Gateway, client: aiocoap.Context) -> None:
    pack = encode_senml([Record("temp", 21.5, "Cel", 0.0)])
    held = gateway.fleet.encoded(DeviceId("dev-1"))
    await ask(client, gateway, Code.GET, "/cfg/dev-1", blockwise=True)
    current = await ask(
        client, gateway, Code.POST, f"/tel/dev-1?cfg={held.etag.hex()}", payload=pack,
        content_format=112,
    )  # fmt: skip
    assert (current.code, current.payload) == (Code.CHANGED, b"")
    edit(gateway, "region/eu", 1200)
    stale = await ask(
        client, gateway, Code.POST, f"/tel/dev-1?cfg={held.etag.hex()}", payload=pack,
        content_format=112,
    )  # fmt: skip
    assert stale.code == Code.CHANGED
    assert stale.opt.content_format == ContentFormat.DELTA
    assert apply_delta_encoded(held, stale.payload).etag == stale.opt.etag
    assert len(gateway.fleet.store.telemetry(DeviceId("dev-1"))) == 2
    wrong = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=b"\x01", content_format=112)
    assert wrong.code == Code.BAD_REQUEST
    text = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=b"x", content_format=0)
    assert text.code == Code.UNSUPPORTED_CONTENT_FORMAT


async def test_block1_bodies_are_bounded_and_ordered(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    message = aiocoap.Message(code=Code.POST, uri=gateway.uri + "/state/dev-1", payload=b"x" * 64)
    message.opt.block1 = BlockOption.BlockwiseTuple(3, True, 2)  # a gap: block 3 first
    gap = await client.request(message, handle_blockwise=False).response
    assert gap.code == Code.REQUEST_ENTITY_INCOMPLETE
    reply: aiocoap.Message | None = None
    for number in range(70):  # 70 blocks of 1 KiB: past the 64 KiB bound
        message = aiocoap.Message(
            code=Code.POST, uri=gateway.uri + "/state/dev-1", payload=b"x" * 1024
        )
        message.opt.block1 = BlockOption.BlockwiseTuple(number, True, 6)
        reply = await client.request(message, handle_blockwise=False).response
        assert reply is not None
        if reply.code != Code.CONTINUE:
            break
    assert reply is not None
    assert reply.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert reply.opt.size1 == 64 * 1024


async def test_group_resource_get_put_ipatch_with_if_match(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    document = layer_to_document(layer_from_parts(sets={INTERVAL: 600}))
    put = await ask(client, gateway, Code.PUT, "/grp/region/eu", payload=encode(document))
    assert put.code == Code.CHANGED
    got = await ask(client, gateway, Code.GET, "/grp/region/eu")
    assert decode(got.payload) == {"set": {"net.uplink.interval_s": 600}}
    stale = await ask(
        client, gateway, Code.iPATCH, "/grp/region/eu", payload=encode({"lock": ["log.level"]}),
        if_match=[b"\x00" * 8],
    )  # fmt: skip
    assert stale.code == Code.PRECONDITION_FAILED
    patched = await ask(
        client, gateway, Code.iPATCH, "/grp/region/eu", payload=encode({"lock": ["log.level"]}),
        if_match=[got.opt.etag],
    )  # fmt: skip
    assert patched.code == Code.CHANGED
    invalid = encode({"set": {"net.uplink.interval_s": 1}})
    refused = await ask(client, gateway, Code.PUT, "/grp/region/eu/west", payload=invalid)
    assert refused.code == Code.UNPROCESSABLE_ENTITY
    assert b"would violate net.uplink.interval_s" in refused.payload
    locked = encode({"set": {"log.level": "debug"}})
    refused = await ask(client, gateway, Code.PUT, "/grp/region/eu/west", payload=locked)
    assert refused.code == Code.FORBIDDEN
    assert b"locked by region/eu" in refused.payload


async def test_observing_a_config_notifies_block0_with_etag(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    message = aiocoap.Message(code=Code.GET, uri=gateway.uri + "/cfg/dev-1", observe=0)
    message.opt.block2 = BlockOption.BlockwiseTuple(0, False, 4)
    request = client.request(message, handle_blockwise=False)
    first = await request.response
    assert first.opt.observe is not None
    observation = request.observation
    assert observation is not None
    notifications = aiter(observation)
    edit(gateway, "region/eu", 1500)
    note = await asyncio.wait_for(anext(notifications), 5)
    expected = gateway.fleet.encoded(DeviceId("dev-1"))
    assert note.opt.etag == expected.etag
    assert note.opt.block2 is not None and note.opt.block2.block_number == 0
    assert note.payload == expected.cbor[:256]
    observation.cancel()


async def test_overload_is_shed_with_5_03_and_max_age(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    gateway.config.gate.limit = 0
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-1")
    assert reply.code == Code.SERVICE_UNAVAILABLE
    assert reply.opt.max_age is not None and reply.opt.max_age > 0


async def test_two_agent_schema_versions_side_by_side(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    gateway.fleet.load_schema(SCHEMA_V2.read_bytes(), "json", source="v2", now=5.0)
    gateway.fleet.add_device(sensor("dev-1"))
    new = decode((await ask(client, gateway, Code.GET, "/cfg/dev-1?sv=2", blockwise=True)).payload)
    old = decode((await ask(client, gateway, Code.GET, "/cfg/dev-1?sv=1", blockwise=True)).payload)
    assert "ring_buffer_kib" in new["log"]  # type: ignore[index,operator]
    assert "buffer_kib" not in new["log"]  # type: ignore[index,operator]
    assert "buffer_kib" in old["log"]  # type: ignore[index,operator]  # translated back
    assert "ring_buffer_kib" not in old["log"]  # type: ignore[index,operator]
    unknown = await ask(client, gateway, Code.GET, "/cfg/dev-1?sv=9")
    assert unknown.code == Code.BAD_REQUEST


async def test_well_known_core_lists_the_resources(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    reply = await ask(client, gateway, Code.GET, "/.well-known/core")
    text = reply.payload.decode()
    for resource in ("cfg", "state", "tel", "grp", "dev"):
        assert f'</{resource}>;rt="edgecfg.{resource}"' in text


async def test_two_agent_versions_side_by_side_get_what_they_understand(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    gateway.fleet.add_device(sensor("old-agent", agent="1.0.0"))
    gateway.fleet.add_device(sensor("new-agent", agent="2.5.0"))
    old = decode((await ask(client, gateway, Code.GET, "/cfg/old-agent", blockwise=True)).payload)
    new = decode((await ask(client, gateway, Code.GET, "/cfg/new-agent", blockwise=True)).payload)
    assert is_map(old) and is_map(new)
    new_features, old_features = new["features"], old.get("features", {})
    assert is_map(new_features) and is_map(old_features)
    assert "local_rules" in new_features  # agent >= 2.0
    assert "local_rules" not in old_features
    assert "block_resume" not in old_features  # agent >= 1.1
    [why] = gateway.fleet.explain(DeviceId("old-agent"), ("features", "local_rules"))
    assert why.dropped is not None and "agent 1.0.0" in why.dropped
