"""The agent against a real gateway over loopback UDP, direct and through lossy links."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from edgecfg.agent.coap import CoapLink, LinkDown, Method, Reply, Traffic
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff, Retry, until
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.core.session import WAIT_SPREAD
from edgecfg.gateway.observations import IDLE_RETRY_S
from edgecfg.gateway.server import Gateway
from edgecfg.sim.link import LinkProfile
from edgecfg.sim.proxy import UdpProxy
from edgecfg.wire.senml import Record
from tests.agent.virtual_time import VirtualTime
from tests.gateway.helpers import free_udp_port

INTERVAL = ("net", "uplink", "interval_s")
FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)


def edit(gateway: Gateway, value: int, layer: str = "region/eu") -> None:
    gateway.fleet.write_layer(
        LayerId(layer), layer_from_parts(sets={INTERVAL: value}), author="t", message="", now=2
    )
    gateway.layer_changed(LayerId(layer))


def interval(agent: Agent) -> object:
    config = agent.config
    assert config is not None
    return config["net"]["uplink"]["interval_s"]  # type: ignore[index]


class CountingLink:
    """A real CoAP link that records each GET's block number and can fail on cue."""

    def observe(self, path: Sequence[str]) -> AsyncIterator[Reply]:
        return self.inner.observe(path)

    def __init__(
        self,
        inner: CoapLink,
        *,
        fail_after: int | None = None,
        before_block: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.traffic: Traffic = inner.traffic
        self.blocks: list[int] = []
        self.fail_after = fail_after
        self.before_block = before_block  # told each block's count before it is sent

    async def request(
        self,
        method: Method,
        path: Sequence[str],
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
        etags: Sequence[bytes] = (),
        block2: tuple[int, int] | None = None,
    ) -> Reply:
        if self.fail_after is not None and len(self.blocks) >= self.fail_after:
            raise LinkDown("simulated power cut")
        if method == "GET" and block2 is not None:
            self.blocks.append(block2[0])
            if self.before_block is not None:
                self.before_block(len(self.blocks))
        return await self.inner.request(
            method, path, query=query, payload=payload, content_format=content_format,
            etags=etags, block2=block2,
        )  # fmt: skip


async def test_first_sync_then_unchanged_then_delta(gateway: Gateway, tmp_path: Path) -> None:
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        first = await agent.sync()
        assert first.outcome == "updated"
        assert first.etag == gateway.fleet.etag(DeviceId("dev-1"))
        unchanged = await agent.sync()
        assert (unchanged.outcome, unchanged.round_trips) == ("current", 1)  # own wake: 1
        edit(gateway, 900)
        changed = await agent.sync()
        assert changed.outcome == "updated"
        assert changed.round_trips == 2  # the delta and the state report
        assert changed.bytes_down < 120
        assert interval(agent) == 900
    record = gateway.fleet.store.get_device(DeviceId("dev-1"))
    assert record.applied_etag == gateway.fleet.etag(DeviceId("dev-1"))


async def test_config_rides_on_telemetry(gateway: Gateway, tmp_path: Path) -> None:
    pack = [Record("temp", 20.5, "Cel", 0.0)]
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        await agent.sync()
        current = await agent.telemetry(pack)
        assert (current.outcome, current.round_trips) == ("current", 1)  # zero extra
        edit(gateway, 1800)
        stale = await agent.telemetry(pack)
        assert stale.outcome == "updated"
        assert stale.round_trips == 1  # the telemetry POST alone: no state report
        assert interval(agent) == 1800
        served = gateway.fleet.etag(DeviceId("dev-1"))
        assert gateway.fleet.store.get_device(DeviceId("dev-1")).applied_etag != served
        # the next telemetry names the applied version, and the gateway records it
        again = await agent.telemetry(pack)
        assert (again.outcome, again.round_trips) == ("current", 1)
        assert gateway.fleet.store.get_device(DeviceId("dev-1")).applied_etag == served


async def test_a_config_riding_on_telemetry_is_reported_when_the_run_has_not_introduced_itself(
    gateway: Gateway, tmp_path: Path
) -> None:
    pack = [Record("temp", 20.5, "Cel", 0.0)]
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        await Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST).sync()
        edit(gateway, 1800)
        # a new run (a reboot): its first report says hardware and versions
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        stale = await agent.telemetry(pack)
        assert (stale.outcome, stale.round_trips) == ("updated", 2)
    record = gateway.fleet.store.get_device(DeviceId("dev-1"))
    assert record.applied_etag == gateway.fleet.etag(DeviceId("dev-1"))


async def test_transfer_resumes_at_the_block_where_it_broke_off(
    gateway: Gateway, tmp_path: Path
) -> None:
    size = len(gateway.fleet.encoded(DeviceId("dev-1")).cbor)
    async with CoapLink(gateway.uri, ack_timeout=0.5) as inner:
        cut = CountingLink(inner, fail_after=5)
        agent = Agent(cut, LocalState(tmp_path), device="dev-1", szx=2, backoff=Backoff(attempts=1))
        with pytest.raises(LinkDown):
            await agent.sync()
        assert cut.blocks == [0, 1, 2, 3, 4]
        # the agent restarts (new objects, same state directory) and resumes at block 5
        resumed = CountingLink(inner)
        agent = Agent(resumed, LocalState(tmp_path), device="dev-1", szx=2, backoff=FAST)
        result = await agent.sync()
    assert result.outcome == "updated"
    assert resumed.blocks[0] == 5
    assert len(resumed.blocks) == -(-size // 64) - 5
    assert agent.state.load_transfer() is None


async def test_a_changed_etag_mid_transfer_starts_over_cleanly(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=0.5) as inner:
        cut = CountingLink(inner, fail_after=3)
        agent = Agent(cut, LocalState(tmp_path), device="dev-1", szx=2, backoff=Backoff(attempts=1))
        with pytest.raises(LinkDown):
            await agent.sync()
        edit(gateway, 2400)  # the config changes while the device sleeps
        again = CountingLink(inner)
        agent = Agent(again, LocalState(tmp_path), device="dev-1", szx=2, backoff=FAST)
        result = await agent.sync()
    assert result.outcome == "updated"
    assert again.blocks[0] == 3  # tried to resume...
    assert 0 in again.blocks[1:]  # ...saw the new ETag and started over
    assert interval(agent) == 2400


async def test_critical_first_then_bulk_within_a_byte_budget(
    gateway: Gateway, tmp_path: Path
) -> None:
    # hashes: a script no compressor can shrink below the budget
    script = "".join(f"echo {hashlib.sha256(bytes([i])).hexdigest()}\n" for i in range(40))
    async with CoapLink(gateway.uri, ack_timeout=0.5) as inner:
        agent = Agent(inner, LocalState(tmp_path), device="dev-1", backoff=FAST)
        await agent.sync()
        gateway.fleet.write_layer(
            LayerId("region/eu"),
            layer_from_parts(sets={INTERVAL: 600, ("scripts", "on_boot"): script}),
            author="t", message="", now=3,
        )  # fmt: skip
        link = CountingLink(inner)
        careful = Agent(
            link, LocalState(tmp_path), device="dev-1", szx=2, critical_first=True,
            budget=256, backoff=FAST,
        )  # fmt: skip
        result = await careful.sync()
        assert result.outcome == "partial"  # the bulk change is over budget: deferred
        assert interval(careful) == 600  # the critical change is applied already
        config = careful.config
        assert config is not None
        assert config["scripts"]["on_boot"] != script  # type: ignore[index]
        generous = Agent(link, LocalState(tmp_path), device="dev-1", szx=2, backoff=FAST)
        finished = await generous.sync()
        assert finished.outcome == "updated"
        assert generous.config is not None
        assert generous.config["scripts"]["on_boot"] == script  # type: ignore[index]
    assert link.blocks.count(0) == 2  # critical, bulk block 0; the resume went on at 1


async def test_sync_converges_over_a_30_percent_lossy_link(
    gateway: Gateway, tmp_path: Path
) -> None:
    assert gateway.address is not None
    profile = LinkProfile(loss=0.3, delay_s=0.002, jitter_s=0.004)
    async with UdpProxy(gateway.address, profile=profile, seed=7) as proxy:
        host, port = proxy.address
        async with CoapLink(f"coap://{host}:{port}", ack_timeout=0.2, max_retransmit=6) as link:
            agent = Agent(link, LocalState(tmp_path), device="dev-1", szx=6, backoff=FAST, seed=1)
            first = await agent.sync()
            edit(gateway, 3000)
            second = await agent.sync()
        stats = proxy.link.stats()
    assert first.outcome == second.outcome == "updated"
    assert interval(agent) == 3000
    assert stats.up.dropped + stats.down.dropped > 0  # the link really lost datagrams


async def test_a_partition_mid_transfer_heals_and_resumes(gateway: Gateway, tmp_path: Path) -> None:
    assert gateway.address is not None
    async with UdpProxy(gateway.address, profile=LinkProfile(), seed=3) as proxy:
        host, port = proxy.address
        async with CoapLink(f"coap://{host}:{port}", ack_timeout=0.1, max_retransmit=1) as inner:

            def cut_at_the_fourth_block(count: int) -> None:
                # on the link's own event, not a polling task that load can delay
                if count == 4:
                    proxy.link.partition(True)

            link = CountingLink(inner, before_block=cut_at_the_fourth_block)
            agent = Agent(link, LocalState(tmp_path), device="dev-1", szx=2,
                          backoff=Backoff(attempts=1))  # fmt: skip
            with pytest.raises(LinkDown):
                await agent.sync()
            reached = agent.state.load_transfer()
            assert reached is not None and reached.next_block() == 3
            proxy.link.partition(False)  # the partition heals
            link.before_block = None
            link.blocks.clear()
            agent = Agent(link, LocalState(tmp_path), device="dev-1", szx=2, backoff=FAST)
            result = await agent.sync()
    assert result.outcome == "updated"
    assert link.blocks[0] == reached.next_block()


async def test_duplicated_and_reordered_datagrams_change_nothing(
    gateway: Gateway, tmp_path: Path
) -> None:
    assert gateway.address is not None
    profile = LinkProfile(duplicate=0.5, reorder=0.3, jitter_s=0.003)
    async with UdpProxy(gateway.address, profile=profile, seed=11) as proxy:
        host, port = proxy.address
        async with CoapLink(f"coap://{host}:{port}", ack_timeout=0.3) as link:
            agent = Agent(link, LocalState(tmp_path), device="dev-1", szx=3, backoff=FAST)
            await agent.sync()
            edit(gateway, 4200)
            await agent.sync()
            assert (await agent.sync()).outcome == "current"
    held = agent.state.load_config()
    assert held is not None
    assert held.etag == gateway.fleet.etag(DeviceId("dev-1"))
    assert interval(agent) == 4200


async def observing(gateway: Gateway, device: str = "dev-1") -> None:
    """Wait until the gateway holds an observation of ``device``'s config.

    The gateway offers no event for a registration, so this polls, but with
    no deadline of its own: the test's ``asyncio.timeout`` bounds it."""
    while not gateway.config.observers.get(device):
        await asyncio.sleep(0.005)


async def test_an_online_agent_observes_and_syncs_when_notified(
    gateway: Gateway, tmp_path: Path
) -> None:
    # Waits for the events it asserts (each on_sync call), never for time: the
    # first version cancelled the watcher once the config showed the new value,
    # which under load could be before the callback recorded "updated".
    results: asyncio.Queue[str] = asyncio.Queue()
    stop = asyncio.Event()
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        watcher = asyncio.create_task(agent.watch(stop, lambda r: results.put_nowait(r.outcome)))
        async with asyncio.timeout(60):  # a bound for a broken agent, not a timing assumption
            assert await results.get() == "updated"  # the first sync, before observing
            await observing(gateway)
            edit(gateway, 5400)  # notifies the observers of every device in region/eu
            assert await results.get() == "updated"  # the notification's sync
            stop.set()
            await watcher
    assert interval(agent) == 5400
    assert results.empty()


async def test_watch_stops_within_a_second_while_no_notification_arrives(
    gateway: Gateway, tmp_path: Path
) -> None:
    synced = asyncio.Event()
    stop = asyncio.Event()
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        watcher = asyncio.create_task(agent.watch(stop, lambda _: synced.set()))
        async with asyncio.timeout(60):
            await synced.wait()
            await observing(gateway)
        assert not watcher.done()  # observing a config nobody changes: nothing arrives
        stop.set()
        await asyncio.wait_for(watcher, timeout=1.0)  # was: only at the next notification


async def test_watch_stops_within_a_second_while_waiting_to_retry(tmp_path: Path) -> None:
    retries: asyncio.Queue[Retry] = asyncio.Queue()
    stop = asyncio.Event()
    async with CoapLink(f"coap://127.0.0.1:{free_udp_port()}", ack_timeout=0.1) as link:
        slow = Backoff(base_s=600.0, attempts=3)  # the next retry is minutes away
        agent = Agent(
            link, LocalState(tmp_path), device="dev-1", backoff=slow, on_retry=retries.put_nowait
        )
        watcher = asyncio.create_task(agent.watch(stop, lambda _: None))
        async with asyncio.timeout(60):
            await retries.get()
        stop.set()
        await asyncio.wait_for(watcher, timeout=1.0)


async def test_until_returns_the_result_or_none_once_stopped() -> None:
    stop = asyncio.Event()

    async def answer() -> int:
        return 42

    assert await until(stop, answer()) == 42
    cancelled = asyncio.Event()

    async def forever() -> int:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return 0

    pending = asyncio.create_task(until(stop, forever()))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(pending, timeout=1.0) is None
    assert cancelled.is_set()  # the work was cancelled and its cleanup ran

    async def broken() -> int:
        raise LinkDown("down")

    with pytest.raises(LinkDown):
        await until(asyncio.Event(), broken())


async def test_a_sync_against_a_dead_gateway_reports_each_attempt(tmp_path: Path) -> None:
    port = free_udp_port()  # nothing listens there
    retries: list[Retry] = []
    async with CoapLink(f"coap://127.0.0.1:{port}", ack_timeout=0.1) as link:
        agent = Agent(
            link, LocalState(tmp_path), device="dev-1",
            backoff=Backoff(base_s=0.01, attempts=3), on_retry=retries.append,
        )  # fmt: skip
        with pytest.raises(LinkDown) as caught:
            await agent.sync()
    assert [(r.attempt, r.attempts) for r in retries] == [(1, 3), (2, 3)]
    assert all(0 <= r.delay_s <= 0.04 for r in retries)
    error = caught.value
    assert error.address == f"coap://127.0.0.1:{port}"
    assert error.kind == "refused"  # loopback answers ICMP port unreachable
    assert "connection refused" in error.cause
    assert "is the gateway running" in error.likely


async def test_a_corrupted_store_falls_back_and_the_next_report_says_so(
    gateway: Gateway, tmp_path: Path
) -> None:
    reports: list[bytes] = []

    class Recording(CountingLink):
        async def request(self, method: Method, path: Sequence[str], **kw: object) -> Reply:
            if method == "POST" and path[0] == "state":
                reports.append(bytes(kw.get("payload", b"")))  # type: ignore[arg-type]
            return await super().request(method, path, **kw)  # type: ignore[arg-type]

    async with CoapLink(gateway.uri, ack_timeout=0.5) as inner:
        agent = Agent(inner, LocalState(tmp_path), device="dev-1", backoff=FAST)
        await agent.sync()
        first = agent.state.load_config()
        edit(gateway, 6000)
        await agent.sync()
        newest = agent.state.store.load().current
        assert first is not None and newest is not None
        slot = Path(agent.state.store.slot_path(newest.slot))
        damaged = bytearray(slot.read_bytes())
        damaged[-5] ^= 0x40  # a bit flip in the ciphertext
        slot.write_bytes(bytes(damaged))
        restarted = Agent(Recording(inner), LocalState(tmp_path), device="dev-1", backoff=FAST)
        held = restarted.state.load_config()
        assert held is not None and held.etag == first.etag  # the older generation
        result = await restarted.sync()
    assert result.outcome == "updated"
    assert interval(restarted) == 6000
    assert reports and b"store_events" in reports[-1]
    assert b"authentication" in reports[-1]
    transfer_plain = gateway.fleet.encoded(DeviceId("dev-1")).cbor[:32]
    assert all(transfer_plain not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


SLOW = Backoff(base_s=600.0, cap_s=600.0, attempts=3)
"""An own backoff of minutes: a test that finishes did not use it."""


async def test_a_sync_refused_4_29_waits_the_gateways_max_age_then_succeeds(
    gateway: Gateway, tmp_path: Path
) -> None:
    budgets = gateway.admission.budgets
    gateway.admission.budgets = dataclasses.replace(budgets, peer_in_flight=0)  # 4.29, Max-Age 1
    retries: list[Retry] = []

    def reopen(retry: Retry) -> None:
        retries.append(retry)
        gateway.admission.budgets = budgets  # the retry is let in

    virtual = VirtualTime()  # the Max-Age is waited out in virtual time, not for real
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(
            link, LocalState(tmp_path), device="dev-1", backoff=SLOW, on_retry=reopen,
            clock=virtual.clock, sleep=virtual.sleep,
        )  # fmt: skip
        async with asyncio.timeout(60):  # a bound for a broken agent, not a timing assumption
            result = await agent.sync()
    assert result.outcome == "updated"
    [retry] = retries
    assert (retry.error.kind, retry.error.retry_after_s) == ("overloaded", 1.0)
    # the sync session sleeps until the Max-Age is over, spread by up to WAIT_SPREAD
    # (no virtual time passed since the refusal: the whole Max-Age is left)
    assert virtual.slept == [retry.delay_s]
    assert 1.0 <= retry.delay_s <= 1.0 * (1 + WAIT_SPREAD)
    assert "4.29, retry after 1 s" in str(retry.error)


async def test_an_observation_the_gateway_ended_is_registered_again_after_its_max_age(
    gateway: Gateway, tmp_path: Path
) -> None:
    results: asyncio.Queue[str] = asyncio.Queue()
    retries: asyncio.Queue[Retry] = asyncio.Queue()
    stop = asyncio.Event()
    virtual = VirtualTime()  # the Max-Age is waited out in virtual time, not for real
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=SLOW,
                      on_retry=retries.put_nowait, clock=virtual.clock,
                      sleep=virtual.sleep)  # fmt: skip
        watcher = asyncio.create_task(agent.watch(stop, lambda r: results.put_nowait(r.outcome)))
        async with asyncio.timeout(60):
            assert await results.get() == "updated"
            await observing(gateway)
            # the agent sends nothing while it observes: idle, by the gateway's bound
            idle = gateway.admission.budgets.observation_idle_s
            gateway.housekeeping(time.monotonic() + idle + 1)
            assert gateway.gate.observations.ended_idle == 1
            retry = await retries.get()
            assert (retry.error.kind, retry.error.retry_after_s) == ("overloaded", IDLE_RETRY_S)
            assert retry.delay_s <= IDLE_RETRY_S * (1 + WAIT_SPREAD) + 0.01
            assert await results.get() == "current"  # it syncs, then observes again
            assert virtual.slept == [retry.delay_s]  # the one wait, in virtual time
            await observing(gateway)
            edit(gateway, 5400)
            assert await results.get() == "updated"  # notified through the new observation
            stop.set()
            await watcher
    assert interval(agent) == 5400
