"""/rollout/{id} over real CoAP: status (observable) and operator actions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code

from edgecfg.gateway.server import Gateway
from tests.gateway.helpers import ask

PLAN: dict[str, object] = {
    "change": {"net.uplink.interval_s": 900},
    "target": "region/eu",
    "stages": ["50%", "100%"],
}


def _post(action: object, reason: object = "because", **extra: object) -> bytes:
    return cbor2.dumps({"action": action, "reason": reason, **extra})


async def test_get_answers_the_status_and_post_acts(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    gateway.rollouts.start(PLAN, now=1000.0, author="ops", rollout_id="r1")
    reply = await ask(client, gateway, Code.GET, "/rollout/r1")
    assert reply.code == Code.CONTENT and reply.opt.content_format == 60
    status = cbor2.loads(reply.payload)
    assert status["id"] == "r1" and status["phase"] == "running" and "age_h" not in status
    again = await ask(client, gateway, Code.GET, "/rollout/r1", etags=(reply.opt.etag,))
    assert again.code == Code.VALID
    paused = await ask(client, gateway, Code.POST, "/rollout/r1", payload=_post("pause"),
                       content_format=60)  # fmt: skip
    assert paused.code == Code.CHANGED
    assert cbor2.loads(paused.payload)["phase"] == "paused"
    assert paused.opt.etag != reply.opt.etag
    history = gateway.rollouts.history("r1")
    assert history[-1]["action"] == "pause" and history[-1]["reason"] == "because"


async def test_observers_hear_of_actions(gateway: Gateway, client: aiocoap.Context) -> None:
    gateway.rollouts.start(PLAN, now=1000.0, author="ops", rollout_id="r1")
    request = client.request(
        aiocoap.Message(code=Code.GET, uri=gateway.uri + "/rollout/r1", observe=0)
    )
    first = await request.response
    assert first.opt.observe is not None and request.observation is not None
    notifications = aiter(request.observation)
    await ask(client, gateway, Code.POST, "/rollout/r1", payload=_post("rollback"))
    note = await asyncio.wait_for(anext(notifications), 10)
    assert cbor2.loads(note.payload)["phase"] == "rolled_back"
    request.observation.cancel()


async def test_an_unknown_rollout_is_answered_not_observed(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    request = client.request(
        aiocoap.Message(code=Code.GET, uri=gateway.uri + "/rollout/nobody", observe=0)
    )
    reply = await request.response
    assert reply.code == Code.NOT_FOUND and reply.opt.observe is None
    assert gateway.rollout_resource.observers == {}


async def test_bad_requests_say_what_was_expected(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    gateway.rollouts.start(PLAN, now=1000.0, author="ops", rollout_id="r1")
    cases = [
        (_post("explode"), "action: expected one of"),
        (_post("pause", ""), "reason: a non-empty text"),
        (_post("pause", "x", extra=1), "unknown keys ['extra']"),
        (cbor2.dumps([1, 2]), "expected a CBOR map"),
    ]
    for payload, message in cases:
        reply = await ask(client, gateway, Code.POST, "/rollout/r1", payload=payload)
        assert reply.code == Code.BAD_REQUEST and message in reply.payload.decode(), reply.payload
    missing = await ask(client, gateway, Code.GET, "/rollout/r9")
    assert missing.code == Code.NOT_FOUND and b"r9" in missing.payload
    await ask(client, gateway, Code.POST, "/rollout/r1", payload=_post("rollback"))
    illegal = await ask(client, gateway, Code.POST, "/rollout/r1", payload=_post("resume"))
    assert illegal.code == Code.BAD_REQUEST and b"cannot resume" in illegal.payload
    bare = await ask(client, gateway, Code.GET, "/rollout/r1/extra")
    assert bare.code == Code.BAD_REQUEST and b"/rollout/{id}" in bare.payload


async def test_a_sqlite_gateway_drives_rollouts_in_its_worker_thread(tmp_path: Path) -> None:
    """Decisions and offers run on the rollout worker's own fleet view; serving
    sees their layer writes through its refresh, as it sees any writer's."""
    from edgecfg.core.ids import DeviceId
    from edgecfg.fleet.identity import InsecurePolicy
    from edgecfg.store import SQLiteStore
    from tests.gateway.helpers import free_udp_port, sensor
    from tests.paths import SCHEMA

    with SQLiteStore(tmp_path / "fleet.db") as store:
        gateway = Gateway(store, policy=InsecurePolicy(), refresh_s=3600)
        gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
        for n in range(4):
            gateway.fleet.add_device(sensor(f"dev-{n}"))
        await gateway.start("127.0.0.1", free_udp_port())
        try:
            plan = {**PLAN, "stages": ["50%", "100%"], "min_days": 0,
                    "guardrails": ["checkin"], "margins": {"checkin": 1.0}}  # fmt: skip
            start = 1000.0
            await gateway.in_rollout_worker(
                lambda service: service.start(plan, now=start, author="ops", rollout_id="w1")
            )
            assert gateway._rollout_worker is not None  # pyright: ignore[reportPrivateUsage]
            assert gateway._rollout_worker.fleet is not gateway.fleet  # pyright: ignore[reportPrivateUsage]
            gateway.changed(gateway.fleet.refresh())
            canary = [c.device for c in store.rollout_devices("w1") if c.arm == "canary"]
            assert len(canary) == 2
            for device in canary:  # serving sees the worker's offers
                tree = gateway.fleet.resolve(DeviceId(device)).tree
                assert tree["net"]["uplink"]["interval_s"] == 900  # type: ignore[index]
            made = await gateway.drive_rollouts(0.0, start + 86400.0)
            assert made == 1
            assert gateway.rollouts.history("w1")[-1]["kind"] == "decision"
            status = await gateway.in_rollout_worker(lambda s: s.status("w1", start + 86400.0))
            assert status["phase"] == "running"
        finally:
            await gateway.stop()
