"""Offline for days, then reconnect: virtual-time simulations over real CoAP (issue 6).

Time is virtual.  Local changes carry ``now_ms`` and server writes ``now``
(seconds, which date layer revisions and so the server's change times), so a
month offline takes milliseconds.  The CoAP traffic is real: the agent talks
to the gateway fixture on loopback, directly or through a :class:`UdpProxy`.

The expected outcome of every override comes from :func:`documented_outcome`,
an oracle written from the policy table in the docstring of
:mod:`edgecfg.core.merge`; it never calls the merge code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.agent.coap import CoapLink, Link, LinkDown, Method, Reply, Traffic
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import layer_from_parts, local_layer
from edgecfg.core.path import Path as ConfigPath
from edgecfg.core.path import format_path, parse_path
from edgecfg.core.tree import UNSET, Tree, UnsetType, Value, get, is_map
from edgecfg.fleet.reconcile import acknowledged_sequence, describe, last_outcome
from edgecfg.gateway.server import Gateway
from edgecfg.sim.link import PERFECT, LinkProfile
from edgecfg.sim.proxy import UdpProxy
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.journal import entry_to_value
from tests.paths import SCHEMA

FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)
DAY_S = 86_400
DAY_MS = DAY_S * 1000
START_MS = 1_000 * DAY_MS  # the device's last sync before it goes offline (virtual)
ACK_TIMEOUT = 0.3

# The fixture schema lets devices change no server-wins and no max key; this
# test schema (the next version) adds local changes to a few such keys.
EXTRA_LOCAL = (
    "net.uplink.jitter_pct",  # server-wins
    "net.coap.max_age_s",  # server-wins
    "net.uplink.max_payload_bytes",  # server-wins
    "net.ntp.interval_s",  # max
    "net.retry.backoff_max_s",  # max
    "power.sleep.min_awake_ms",  # max
)


def _every_policy_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA.read_text())
    document["version"] += 1
    for dotted in EXTRA_LOCAL:
        document["keys"][dotted]["local"] = True
    return document


DOCUMENT = _every_policy_document()
POLICY: dict[ConfigPath, str] = {
    parse_path(dotted): spec.get("merge", "server-wins")
    for dotted, spec in DOCUMENT["keys"].items()
}

JITTER = ("net", "uplink", "jitter_pct")  # server-wins
MAX_AGE = ("net", "coap", "max_age_s")  # server-wins
PAYLOAD = ("net", "uplink", "max_payload_bytes")  # server-wins
TELEMETRY = ("telemetry", "interval_s")  # device-wins-within-bounds, local 300..86400
UPLINK = ("net", "uplink", "interval_s")  # device-wins-within-bounds, local 600..86400
DOWNLOAD = ("update", "max_download_kib_per_day")  # device-wins-within-bounds, 64..4096
POWER_MODE = ("power", "mode")  # device-wins-within-bounds, enum
NTP = ("net", "ntp", "interval_s")  # max
BACKOFF = ("net", "retry", "backoff_max_s")  # max (float)
AWAKE = ("power", "sleep", "min_awake_ms")  # max
WAKE = ("power", "wake", "interval_s")  # min, local 3600..604800
RATE = ("log", "rate_limit_per_min")  # min
LEVEL = ("log", "level")  # last-writer-wins
SOURCE = ("device", "location", "source")  # last-writer-wins
TEMPERATURE = ("sensors", "temperature", "calibration", "offset")  # last-writer-wins
HUMIDITY = ("sensors", "humidity", "calibration", "offset")  # last-writer-wins
PRESSURE = ("sensors", "pressure", "calibration", "offset")  # last-writer-wins
RETRIES = ("net", "retry", "max_attempts")  # server only
DRIFT = ("net", "ntp", "max_drift_ms")  # server only
COAP_ACK = ("net", "coap", "ack_timeout_s")  # server only

GROUP_LAYERS = ("global", "region/eu", "region/eu/west")  # lowest precedence first


# ------------------------------------------------------------------ the scenario


@dataclass(frozen=True, slots=True)
class ServerWrite:
    """An operator's edit of a group layer at ``at`` (a fraction of the offline period)."""

    at: float
    layer: str
    sets: Mapping[ConfigPath, Value]


@dataclass(frozen=True, slots=True)
class LocalChange:
    """A local change on the device at ``at`` (a fraction of the offline period)."""

    at: float
    path: ConfigPath
    value: Value | UnsetType


# Before the device's last sync: the server state it goes offline with.
INITIAL = (
    ServerWrite(-0.1, "global", {RETRIES: 6}),
    ServerWrite(-0.1, "region/eu", {TELEMETRY: 3000}),
)

# While offline: 20 server revisions interleaved with 19 local changes.
# Same fraction: the server write comes first (a tie of the two clocks).
OFFLINE: tuple[ServerWrite | LocalChange, ...] = (
    LocalChange(0.05, TELEMETRY, 900),
    ServerWrite(0.06, "region/eu", {LEVEL: "error"}),  # LWW: the server first...
    LocalChange(0.08, WAKE, 7200),
    ServerWrite(0.10, "region/eu", {JITTER: 20}),
    LocalChange(0.12, DOWNLOAD, 1024),
    LocalChange(0.15, PAYLOAD, 512),
    LocalChange(0.16, SOURCE, "gnss"),  # LWW: the device first...
    ServerWrite(0.18, "global", {RATE: 120}),
    ServerWrite(0.20, "region/eu", {PRESSURE: 5.0}),
    LocalChange(0.21, MAX_AGE, 300),
    LocalChange(0.22, NTP, 100_000),
    ServerWrite(0.25, "global", {RETRIES: 7}),
    ServerWrite(0.27, "region/eu", {BACKOFF: 5400.0}),
    LocalChange(0.30, JITTER, 30),
    ServerWrite(0.33, "region/eu/west", {AWAKE: 500}),
    LocalChange(0.35, UPLINK, 1200),
    LocalChange(0.38, TEMPERATURE, 1.5),
    ServerWrite(0.40, "region/eu/west", {DOWNLOAD: 2048}),
    LocalChange(0.42, BACKOFF, 7200.0),
    ServerWrite(0.45, "global", {MAX_AGE: 60}),  # written, but to the value it had
    LocalChange(0.48, RATE, 30),
    ServerWrite(0.50, "region/eu", {TELEMETRY: 1800}),
    ServerWrite(0.52, "region/eu/west", {SOURCE: "cell"}),  # ...then the server
    LocalChange(0.55, POWER_MODE, "saver"),
    ServerWrite(0.58, "region/eu", {WAKE: 3600}),
    ServerWrite(0.60, "region/eu/west", {PAYLOAD: 128}),
    LocalChange(0.62, LEVEL, "info"),  # ...then the device
    ServerWrite(0.65, "global", {NTP: 172_800}),
    ServerWrite(0.68, "global", {HUMIDITY: 2.0}),
    LocalChange(0.68, HUMIDITY, -1.0),  # the same millisecond as the server's write
    LocalChange(0.70, DOWNLOAD, UNSET),  # the override is handed back
    ServerWrite(0.72, "region/eu/west", {RETRIES: 3}),
    LocalChange(0.75, AWAKE, 500),  # what the server already has
    ServerWrite(0.80, "region/eu", {POWER_MODE: "survival"}),
    ServerWrite(0.85, "global", {DRIFT: 500}),
    LocalChange(0.88, TELEMETRY, 1500),  # a second change of the same key
    ServerWrite(0.90, "region/eu", {JITTER: 25}),
    ServerWrite(0.95, "region/eu/west", {COAP_ACK: 3.0}),
    LocalChange(0.97, PRESSURE, -3.0),  # LWW: after every server revision
)


def virtual_ms(at: float, days: int) -> int:
    """The virtual time of a fraction of the offline period, in whole seconds."""
    return START_MS + round(at * days * DAY_S) * 1000


def server_writes(days: int) -> list[tuple[int, ServerWrite]]:
    writes = [*INITIAL, *(event for event in OFFLINE if isinstance(event, ServerWrite))]
    return [(virtual_ms(write.at, days), write) for write in writes]


def local_changes(days: int) -> list[tuple[int, LocalChange]]:
    return [
        (virtual_ms(event.at, days), event) for event in OFFLINE if isinstance(event, LocalChange)
    ]


# ------------------------------------------------------------------ the oracle


@dataclass(frozen=True, slots=True)
class Verdict:
    """The documented decision about one override; ``why`` is a word its reason holds."""

    accepted: bool
    why: str


def same(a: Value | UnsetType, b: Value | UnsetType) -> bool:
    """Encoding equality, as far as these scalars go: 1 and 1.0 differ."""
    return type(a) is type(b) and a == b


def documented_outcome(
    policy: str,
    *,
    base: Value,
    server: Value,
    local: Value,
    local_ms: int,
    server_ms: int | None,
) -> Verdict:
    """The merge module's policy table, for one override whose HLC is ``(local_ms, 0)``.

    ``server_ms`` is when the server last changed this key (None: unknown).
    """
    if same(local, server):
        return Verdict(True, "same value")
    changed = not same(base, server)
    if policy == "server-wins":
        return Verdict(not changed, "changed it")
    if policy == "device-wins-within-bounds":
        return Verdict(True, "device wins")
    if policy in ("max", "min"):
        assert isinstance(local, int | float) and isinstance(server, int | float)
        if local == server:
            return Verdict(False, "ties")
        word = "larger" if policy == "max" else "smaller"
        return Verdict((local > server) == (policy == "max"), word)
    assert policy == "last-writer-wins"
    if not changed:
        return Verdict(True, "not written")
    if server_ms is None:
        return Verdict(False, "unknown time")
    if (local_ms, 0) == (server_ms, 0):
        return Verdict(False, "ties")
    return Verdict((local_ms, 0) > (server_ms, 0), "newer")


@dataclass(frozen=True, slots=True)
class Expected:
    """What the reconnect must produce: values by path, and the decided overrides."""

    values: dict[ConfigPath, Value]
    verdicts: dict[ConfigPath, tuple[int, Verdict]]  # path -> (journal sequence, verdict)
    server: dict[ConfigPath, Value]  # the server's current values


def expected_outcome(days: int, base: Mapping[ConfigPath, Value]) -> Expected:
    """The documented result of the scenario, from the device's values at its last sync."""
    layers: dict[str, dict[ConfigPath, Value]] = {layer: {} for layer in GROUP_LAYERS}

    def effective(path: ConfigPath) -> Value:
        for layer in reversed(GROUP_LAYERS):
            if path in layers[layer]:
                return layers[layer][path]
        return base[path]  # never written: the value the device synced

    changed_ms: dict[ConfigPath, int] = {}
    for at_ms, write in sorted(server_writes(days), key=lambda item: item[0]):
        before = {path: effective(path) for path in write.sets}
        layers[write.layer].update(write.sets)
        for path in write.sets:
            if at_ms > START_MS and not same(before[path], effective(path)):
                changed_ms[path] = at_ms
    server = {path: effective(path) for path in base}
    latest: dict[ConfigPath, tuple[int, int, Value | UnsetType]] = {}
    for sequence, (at_ms, change) in enumerate(local_changes(days), start=1):
        latest[change.path] = (sequence, at_ms, change.value)
    values = dict(server)
    verdicts: dict[ConfigPath, tuple[int, Verdict]] = {}
    for path, (sequence, at_ms, value) in latest.items():
        if isinstance(value, UnsetType):
            continue  # a removed override is not decided: the server's value stays
        verdict = documented_outcome(
            POLICY[path],
            base=base[path],
            server=server[path],
            local=value,
            local_ms=at_ms,
            server_ms=changed_ms.get(path),
        )
        verdicts[path] = (sequence, verdict)
        if verdict.accepted:
            values[path] = value
    return Expected(values, verdicts, server)


def test_the_scenario_covers_every_policy_and_twenty_server_revisions() -> None:
    touched = {event.path for event in OFFLINE if isinstance(event, LocalChange)}
    assert {POLICY[path] for path in touched} == {
        "server-wins", "device-wins-within-bounds", "max", "min", "last-writer-wins",
    }  # fmt: skip
    assert sum(isinstance(event, ServerWrite) for event in OFFLINE) == 20
    times = [at_ms for at_ms, _ in local_changes(7)]
    assert times == sorted(set(times))  # strictly increasing: every HLC counter is 0


# ------------------------------------------------------------------ helpers


class ReportTap:
    """A real CoAP link that keeps every state report carrying a journal and, when
    given a proxy, cuts the proxy's link once the first such report has crossed
    it towards the gateway: the gateway merges, its answer is lost."""

    def __init__(self, inner: CoapLink, *, cut: UdpProxy | None = None) -> None:
        self.inner = inner
        self.traffic: Traffic = inner.traffic
        self.cut = cut
        self.reports: list[bytes] = []
        self.answers: list[Value] = []  # the gateway's "local" answers the device heard
        self.answer = b""  # the answer being heard, block by block

    def journals(self) -> list[list[Any]]:
        """The journal of each report sent, as CBOR values."""
        return [cast(Any, decode(report))["journal"] for report in self.reports]

    def observe(self, path: Sequence[str]) -> AsyncIterator[Reply]:
        return self.inner.observe(path)

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
        sending = self.inner.request(
            method, path, query=query, payload=payload, content_format=content_format,
            etags=etags, block2=block2,
        )  # fmt: skip
        if method == "POST" and path[0] == "state" and block2 is not None:
            return self._heard(await sending)  # a later block of the answer
        report = decode(payload) if method == "POST" and path[0] == "state" else None
        if not (is_map(report) and "journal" in report):
            return await sending
        self.reports.append(payload)
        proxy, self.cut = self.cut, None
        if proxy is None:
            return self._heard(await sending)
        offered = proxy.link.stats().up.sent
        reply = asyncio.ensure_future(sending)
        async with asyncio.timeout(60):  # bounds a broken link, not the machine's speed
            while proxy.link.stats().up.sent == offered:
                await asyncio.sleep(0.001)
        # The report's datagram is scheduled for delivery (the link delays it);
        # the gateway's answer will meet a partitioned link.
        proxy.link.partition(True)
        return self._heard(await reply)

    def _heard(self, reply: Reply) -> Reply:
        """Note the merge outcome the answer carries (assembled when block-wise)."""
        first = reply.block2 is None or reply.block2[0] == 0
        self.answer = reply.payload if first else self.answer + reply.payload
        if reply.block2 is not None and reply.block2[1]:
            return reply  # more to come
        answer = decode(self.answer) if self.answer else None
        if is_map(answer) and "local" in answer:
            self.answers.append(answer["local"])
        return reply


def _allow_local_on_every_policy(gateway: Gateway) -> None:
    document = json.dumps(DOCUMENT).encode()
    gateway.fleet.load_schema(document, "json", source="device.json+local", now=2.0)


def _agent(
    link: Link, folder: Path, gateway: Gateway, device: str = "dev-1", backoff: Backoff = FAST
) -> Agent:
    local = LocalOverrides(folder / "local", node=device, schema=gateway.fleet.schema)
    return Agent(link, LocalState(folder), device=device, backoff=backoff, local=local)


def _local(agent: Agent) -> LocalOverrides:
    assert agent.local is not None
    return agent.local


def _write(gateway: Gateway, layer: str, sets: Mapping[ConfigPath, Value], at_ms: int) -> None:
    edit = layer_from_parts(sets=sets)
    gateway.fleet.write_layer(LayerId(layer), edit, author="ops", message="", now=at_ms / 1000)


def _held_etag(agent: Agent) -> ETag:
    held = agent.state.load_config()
    assert held is not None
    return held.etag


def _assert_converged(gateway: Gateway, agent: Agent) -> None:
    device = DeviceId(agent.device)
    assert _held_etag(agent) == gateway.fleet.etag(device)
    assert agent.config == gateway.fleet.resolve(device).tree
    assert _local(agent).pending() == ()


Decisions = tuple[dict[ConfigPath, int], dict[ConfigPath, tuple[int, str]]]


def _decisions(*outcomes: Value | None) -> Decisions:
    """The accepted (path -> sequence) and rejected (path -> sequence, reason)
    overrides of one or more of the gateway's answers."""
    accepted: dict[ConfigPath, int] = {}
    rejected: dict[ConfigPath, tuple[int, str]] = {}
    for outcome in outcomes:
        assert is_map(outcome)
        for sequence, path in cast(list[list[Any]], outcome["accepted"]):
            accepted[parse_path(path)] = sequence
        for sequence, path, reason in cast(list[list[Any]], outcome["rejected"]):
            rejected[parse_path(path)] = (sequence, reason)
    return accepted, rejected


def _served(gateway: Gateway, device: str = "dev-1") -> Tree:
    return gateway.fleet.resolve(DeviceId(device)).tree


async def _post_report(uri: str, device: str, body: bytes) -> Tree:
    """POST /state/{device} from a fresh client: a new message, never deduplicated."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        message = aiocoap.Message(code=Code.POST, uri=f"{uri}/state/{device}", payload=body)
        answer = decode((await context.request(message).response).payload)
    finally:
        await context.shutdown()
    assert is_map(answer)
    return answer


async def _go_offline(gateway: Gateway, agent: Agent, days: int) -> tuple[Expected, ETag]:
    """Sync, then live through the offline period; returns the documented outcome and
    the ETag the device went offline with.  Nothing is sent while offline."""
    for at_ms, write in server_writes(days):
        if at_ms < START_MS:
            _write(gateway, write.layer, write.sets, at_ms)
    await agent.sync()
    synced = agent.config
    assert synced is not None
    paths = {*POLICY} & {path for event in (*INITIAL, *OFFLINE) for path in _paths_of(event)}
    base: dict[ConfigPath, Value] = {}
    for path in paths:
        value = get(synced, path)
        assert not isinstance(value, UnsetType), format_path(path)
        base[path] = value
    round_trips = agent.link.traffic.round_trips
    local = _local(agent)
    for event in OFFLINE:
        at_ms = virtual_ms(event.at, days)
        if isinstance(event, ServerWrite):
            _write(gateway, event.layer, event.sets, at_ms)
        else:
            local.set(event.path, event.value, reason=f"offline at {at_ms}", now_ms=at_ms)
    assert agent.link.traffic.round_trips == round_trips  # offline indeed
    revisions = [
        revision
        for layer in GROUP_LAYERS
        for revision in gateway.fleet.history(LayerId(layer))
        if revision.created_at > START_MS / 1000
    ]
    assert len(revisions) == 20
    return expected_outcome(days, base), _held_etag(agent)


def _paths_of(event: ServerWrite | LocalChange) -> tuple[ConfigPath, ...]:
    return tuple(event.sets) if isinstance(event, ServerWrite) else (event.path,)


def _assert_runs_offline_on_its_overrides(agent: Agent, etag: ETag) -> None:
    """While offline the device runs on the config it synced plus its latest overrides
    (a removed override: see test_a_removed_override_leaves_the_synced_value_offline)."""
    held = agent.state.load_config()
    config = agent.config
    assert held is not None and held.etag == etag and config is not None
    latest = {event.path: event.value for event in OFFLINE if isinstance(event, LocalChange)}
    for path, value in latest.items():
        if not isinstance(value, UnsetType):
            assert same(get(config, path), value), format_path(path)
    assert len(_local(agent).pending()) == len(latest) + 2  # two paths changed twice


def _assert_documented(gateway: Gateway, expected: Expected, answers: Sequence[Value]) -> None:
    served = _served(gateway)
    wrong = {
        format_path(path): (get(served, path), value)
        for path, value in expected.values.items()
        if not same(get(served, path), value)
    }
    assert wrong == {}, "served value != documented value"
    accepted, rejected = _decisions(*answers)
    assert accepted == {
        path: sequence
        for path, (sequence, verdict) in expected.verdicts.items()
        if verdict.accepted
    }
    assert {path: sequence for path, (sequence, _) in rejected.items()} == {
        path: sequence
        for path, (sequence, verdict) in expected.verdicts.items()
        if not verdict.accepted
    }
    for path, (_, reason) in rejected.items():
        assert expected.verdicts[path][1].why in reason, (format_path(path), reason)


# ------------------------------------------------------------------ 1. days offline


def _latest_sequences(days: int) -> list[int]:
    """The sequence of the latest local change of each path."""
    latest = {change.path: n for n, (_, change) in enumerate(local_changes(days), start=1)}
    return sorted(latest.values())


@pytest.mark.parametrize("days", [7, 30])
async def test_offline_for_days_then_reconnect_converges(
    gateway: Gateway, tmp_path: Path, days: int
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        tap = ReportTap(link)
        agent = _agent(tap, tmp_path, gateway)
        expected, offline_etag = await _go_offline(gateway, agent, days)
        _assert_runs_offline_on_its_overrides(agent, offline_etag)
        result = await agent.sync()  # reconnect
    assert result.outcome == "updated"
    _assert_converged(gateway, agent)
    # the latest change of each path went up once; each report is one merge, one revision
    sent = sorted(entry[0] for journal in tap.journals() for entry in journal)
    assert sent == _latest_sequences(days)
    assert len(gateway.fleet.history(local_layer("dev-1"))) == len(tap.reports)
    assert len(tap.answers) == len(tap.reports)  # the device heard every answer
    assert agent.last_merge == tap.answers[-1]
    stored = last_outcome(gateway.fleet, DeviceId("dev-1"))  # every report's decisions
    assert _decisions(stored) == _decisions(*tap.answers)
    assert is_map(tap.answers[-1]) and tap.answers[-1]["ack"] == len(local_changes(days))
    accepted, rejected = _decisions(*tap.answers)
    assert set(accepted).isdisjoint(rejected)
    assert set(accepted) | set(rejected) == set(expected.verdicts)  # each override, once
    served = _served(gateway)
    for path, (sequence, verdict) in expected.verdicts.items():
        change = next(c for _, c in reversed(local_changes(days)) if c.path == path)
        kept = change.value if path in accepted else expected.server[path]
        assert same(get(served, path), kept), format_path(path)
        assert (accepted.get(path) or rejected[path][0]) == sequence
        if POLICY[path] in ("device-wins-within-bounds", "max", "min"):
            # decided on the local and the current server value alone
            assert (path in accepted) == verdict.accepted, format_path(path)
    for path in (DOWNLOAD, RETRIES, DRIFT, COAP_ACK):  # no override in effect: the server's
        assert same(get(served, path), expected.server[path]), format_path(path)
    verdicts = _local(agent).merged()  # what `agent show` tells
    assert {parse_path(p) for p, v in verdicts.items() if v == "accepted"} == set(accepted)
    assert {parse_path(p) for p, v in verdicts.items() if v != "accepted"} == set(rejected)


@pytest.mark.parametrize("days", [7, 30])
async def test_offline_for_days_then_reconnect_gives_the_documented_outcome(
    gateway: Gateway, tmp_path: Path, days: int
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        tap = ReportTap(link)
        agent = _agent(tap, tmp_path, gateway)
        expected, _ = await _go_offline(gateway, agent, days)
        await agent.sync()  # reconnect
    _assert_converged(gateway, agent)
    _assert_documented(gateway, expected, tap.answers)


@pytest.mark.parametrize("days", [7, 30])
async def test_the_gateway_merges_a_report_on_the_offline_base_as_documented(
    gateway: Gateway, tmp_path: Path, days: int
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        agent = _agent(link, tmp_path, gateway)
        expected, offline_etag = await _go_offline(gateway, agent, days)
        # the report the device should send: its journal, on the config it went offline with
        report = {
            "applied": offline_etag,
            "base": offline_etag,
            "journal": [entry_to_value(entry) for entry in _local(agent).pending()],
        }
        answer = await _post_report(gateway.uri, "dev-1", encode(report))
        await agent.sync()  # the replayed journal is acknowledged with the stored answer
    _assert_converged(gateway, agent)
    assert len(gateway.fleet.history(local_layer("dev-1"))) == 1
    assert last_outcome(gateway.fleet, DeviceId("dev-1")) == answer["local"]
    _assert_documented(gateway, expected, [answer["local"]])


async def test_operators_see_every_decision_of_a_long_reconnect(
    gateway: Gateway, tmp_path: Path
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        tap = ReportTap(link)
        agent = _agent(tap, tmp_path, gateway)
        expected, _ = await _go_offline(gateway, agent, 7)
        await agent.sync()
    assert len(tap.reports) > 1  # the journal went up in chunks
    lines = describe(last_outcome(gateway.fleet, DeviceId("dev-1")) or {})
    explained = {line.split(" of ", 1)[1].split(":", 1)[0] for line in lines}
    assert explained == {format_path(path) for path in expected.verdicts}


async def test_overrides_of_keys_the_server_changed_offline_lose_to_the_server(
    gateway: Gateway, tmp_path: Path
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        agent = _agent(link, tmp_path, gateway)
        await agent.sync()
        local = _local(agent)
        _write(gateway, "region/eu", {JITTER: 20}, START_MS + DAY_MS)
        local.set(JITTER, 30, reason="server-wins", now_ms=START_MS + 2 * DAY_MS)
        local.set(SOURCE, "gnss", reason="lww", now_ms=START_MS + 3 * DAY_MS)
        _write(gateway, "region/eu", {SOURCE: "cell"}, START_MS + 4 * DAY_MS)
        await agent.sync()
    served = _served(gateway)
    # server-wins: the server changed it since the last sync (10 -> 20)
    assert get(served, JITTER) == 20
    # last-writer-wins: the server wrote it on day 4, after the device's day-3 write
    assert get(served, SOURCE) == "cell"
    _, rejected = _decisions(last_outcome(gateway.fleet, DeviceId("dev-1")))
    assert set(rejected) == {JITTER, SOURCE}


async def test_last_writer_wins_compares_with_the_servers_write_of_that_key(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        agent = _agent(link, tmp_path, gateway)
        await agent.sync()
        offline_etag = _held_etag(agent)
        _write(gateway, "region/eu", {LEVEL: "error"}, START_MS + DAY_MS)
        entry = _local(agent).set(LEVEL, "info", reason="debug", now_ms=START_MS + 2 * DAY_MS)
        _write(gateway, "global", {RETRIES: 7}, START_MS + 3 * DAY_MS)  # another key
        report = {"applied": offline_etag, "base": offline_etag, "journal": [entry_to_value(entry)]}
        answer = await _post_report(gateway.uri, "dev-1", encode(report))
    # the device wrote log.level on day 2, the server on day 1: the device is the last writer
    accepted, _ = _decisions(answer["local"])
    assert LEVEL in accepted
    assert get(_served(gateway), LEVEL) == "info"


async def test_a_removed_override_leaves_the_synced_value_offline(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        agent = _agent(link, tmp_path, gateway)
        await agent.sync()
    synced = agent.config
    assert synced is not None and get(synced, DOWNLOAD) == 512
    local = _local(agent)
    local.set(DOWNLOAD, 1024, reason="cheap tariff", now_ms=START_MS + DAY_MS)
    assert agent.config is not None and get(agent.config, DOWNLOAD) == 1024
    local.set(DOWNLOAD, UNSET, reason="back to normal", now_ms=START_MS + 2 * DAY_MS)
    # the override is handed back to the server: the device runs on what it synced
    assert agent.config == synced


# ------------------------------------------------------------------ 2. a partition


async def test_a_partition_in_the_middle_of_a_reconciliation(
    gateway: Gateway, tmp_path: Path
) -> None:
    host, port = "127.0.0.1", int(gateway.uri.rsplit(":", 1)[1])
    async with UdpProxy((host, port), profile=PERFECT, seed=3) as proxy:
        uri = f"coap://{host}:{proxy.address[1]}"
        async with CoapLink(uri, ack_timeout=0.2, max_retransmit=1) as inner:
            tap = ReportTap(inner)
            quick = Backoff(base_s=0.01, cap_s=0.05, attempts=2)
            agent = _agent(tap, tmp_path, gateway, backoff=quick)
            await agent.sync()
            local = _local(agent)
            local.set(TELEMETRY, 900, reason="save battery", now_ms=START_MS + DAY_MS)
            local.set(WAKE, 7200, reason="wake less", now_ms=START_MS + 2 * DAY_MS)
            local.set(UPLINK, 1200, reason="uplink less", now_ms=START_MS + 3 * DAY_MS)
            _write(gateway, "region/eu", {WAKE: 3600}, START_MS + 4 * DAY_MS)
            # reconnect: the report reaches the gateway, the answer meets a cut link
            proxy.link.set_profile(LinkProfile(delay_s=0.05))
            tap.cut = proxy
            with pytest.raises(LinkDown):
                await agent.sync()
            assert proxy.link.stats().down.partitioned >= 1  # the answer was lost
            assert acknowledged_sequence(gateway.fleet, DeviceId("dev-1")) == 3  # merged...
            assert len(local.pending()) == 3  # ...but the device never heard it
            assert agent.config is not None and get(agent.config, TELEMETRY) == 900
            merged = last_outcome(gateway.fleet, DeviceId("dev-1"))
            proxy.link.partition(False)  # healed
            result = await agent.sync()  # replays the journal
    assert result.outcome == "updated"
    first, replayed = tap.journals()  # the same journal, twice (on a newer base)
    assert first == replayed and [entry[0] for entry in first] == [1, 2, 3]
    assert len(gateway.fleet.history(local_layer("dev-1"))) == 1  # applied once
    assert last_outcome(gateway.fleet, DeviceId("dev-1")) == merged
    assert agent.last_merge == merged  # the stored answer, heard this time
    _assert_converged(gateway, agent)
    served = _served(gateway)
    assert (get(served, TELEMETRY), get(served, WAKE), get(served, UPLINK)) == (900, 3600, 1200)


# ------------------------------------------------------------------ 3. duplicates, reordering

ROUNDS: tuple[tuple[tuple[ConfigPath, Value | UnsetType, int], ...], ...] = (
    (  # five offline changes: (path, value, day)
        (TELEMETRY, 900, 1),
        (WAKE, 7200, 2),
        (JITTER, 30, 3),
        (LEVEL, "info", 4),
        (NTP, 100_000, 5),
    ),
    (
        (TELEMETRY, 1200, 10),
        (BACKOFF, 7200.0, 11),
        (JITTER, UNSET, 12),
    ),
)
ROUND_WRITES: tuple[tuple[str, Mapping[ConfigPath, Value], int], ...] = (
    ("region/eu", {JITTER: 20, WAKE: 3600}, 2),  # (layer, sets, day: after the second change)
    ("region/eu/west", {NTP: 172_800}, 10),
)


async def test_duplicated_and_reordered_datagrams_merge_once_with_the_same_outcome(
    gateway: Gateway, tmp_path: Path
) -> None:
    _allow_local_on_every_policy(gateway)
    host, port = "127.0.0.1", int(gateway.uri.rsplit(":", 1)[1])
    shaky = LinkProfile(duplicate=1.0, reorder=0.3, jitter_s=0.005, reorder_hold_s=0.03)
    async with UdpProxy((host, port), profile=shaky, seed=11) as proxy:
        uri = f"coap://{host}:{proxy.address[1]}"
        async with (
            CoapLink(uri, ack_timeout=ACK_TIMEOUT) as through,
            CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as direct,
        ):
            tap = ReportTap(through)
            shaken = _agent(tap, tmp_path / "dev-1", gateway, "dev-1")
            calm = _agent(direct, tmp_path / "dev-2", gateway, "dev-2")
            await shaken.sync()
            await calm.sync()
            for number, (changes, (layer, sets, day)) in enumerate(
                zip(ROUNDS, ROUND_WRITES, strict=True), start=1
            ):
                for path, value, on in changes:
                    for agent in (shaken, calm):
                        now_ms = START_MS + on * DAY_MS
                        _local(agent).set(path, value, reason="offline", now_ms=now_ms)
                _write(gateway, layer, sets, START_MS + day * DAY_MS + 1000)
                await shaken.sync()  # every datagram twice, some overtaken
                await calm.sync()
                for agent in (shaken, calm):
                    _assert_converged(gateway, agent)
                    history = gateway.fleet.history(local_layer(agent.device))
                    assert len(history) == number  # one revision per merge
                one = last_outcome(gateway.fleet, DeviceId("dev-1"))
                assert one == last_outcome(gateway.fleet, DeviceId("dev-2"))
                assert is_map(one) and one["ack"] == sum(len(r) for r in ROUNDS[:number])
                layers = [gateway.fleet.layer(local_layer(d)).sets for d in ("dev-1", "dev-2")]
                assert layers[0] == layers[1]
                assert shaken.config == calm.config
            # late copies of the first report, each a new message: answered, never applied
            for stale in (tap.reports[0], tap.reports[0]):
                answer = await _post_report(uri, "dev-1", stale)
                assert answer["local"] == last_outcome(gateway.fleet, DeviceId("dev-1"))
    assert len(gateway.fleet.history(local_layer("dev-1"))) == len(ROUNDS)
    _assert_converged(gateway, shaken)
    stats = proxy.link.stats()
    assert stats.up.duplicated == stats.up.sent - stats.up.dropped > 0
    assert stats.down.duplicated > 0 and stats.up.reordered + stats.down.reordered > 0
    served = _served(gateway)
    assert get(served, TELEMETRY) == 1200  # device-wins-within-bounds, the later change
    assert get(served, WAKE) == 3600  # min: the server's smaller value
    # max: 100000 beat the 86400 of round 1; merged into local/dev-1, it stays above
    # the server's later 172800, which no new local change brings to a merge
    assert get(served, NTP) == 100_000
    assert get(served, BACKOFF) == 7200.0  # max: the local larger value
    assert get(served, JITTER) == 20  # the override was handed back


# ------------------------------------------------------------------ 4. a reboot


async def test_a_reboot_while_offline_keeps_the_pending_overrides(
    gateway: Gateway, tmp_path: Path
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        agent = _agent(link, tmp_path, gateway)
        await agent.sync()
    local = _local(agent)
    local.set(TELEMETRY, 900, reason="save battery", now_ms=START_MS + DAY_MS)
    local.set(BACKOFF, 7200.0, reason="back off longer", now_ms=START_MS + 2 * DAY_MS)
    _write(gateway, "global", {RATE: 30}, START_MS + 3 * DAY_MS)
    local.set(LEVEL, "info", reason="debug", now_ms=START_MS + 4 * DAY_MS)
    running = agent.config
    assert running is not None and get(running, TELEMETRY) == 900
    del agent, local  # power cut: nothing survives but the state directory
    link = CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT)  # not opened yet
    rebooted = _agent(link, tmp_path, gateway)
    assert rebooted.config == running  # before any network traffic
    local = _local(rebooted)
    assert [entry.sequence for entry in local.pending()] == [1, 2, 3]
    later = local.set(WAKE, 7200, reason="wake less", now_ms=START_MS + 5 * DAY_MS)
    assert later.sequence == 4 and later.at > local.pending()[2].at
    assert link.traffic.round_trips == 0
    async with link:
        result = await rebooted.sync()  # reconnect
    assert result.outcome == "updated"
    _assert_converged(gateway, rebooted)
    accepted, rejected = _decisions(last_outcome(gateway.fleet, DeviceId("dev-1")))
    assert (accepted, rejected) == ({TELEMETRY: 1, BACKOFF: 2, LEVEL: 3, WAKE: 4}, {})
    served = _served(gateway)
    assert get(served, TELEMETRY) == 900  # device-wins-within-bounds
    assert get(served, BACKOFF) == 7200.0  # max(7200.0, 3600.0)
    assert get(served, LEVEL) == "info"  # last-writer-wins: the server never wrote it
    assert get(served, WAKE) == 7200  # min(7200, 86400)
    assert get(served, RATE) == 30  # the server's change while the device slept


async def test_an_unknown_base_lets_the_server_keep_server_wins_keys(
    gateway: Gateway, tmp_path: Path
) -> None:
    _allow_local_on_every_policy(gateway)
    async with CoapLink(gateway.uri, ack_timeout=ACK_TIMEOUT) as link:
        agent = _agent(link, tmp_path, gateway)
        await agent.sync()
        before = get(_served(gateway), JITTER)
        entry = _local(agent).set(JITTER, 33, reason="mine", now_ms=START_MS + DAY_MS)
        held = _held_etag(agent)
        unknown = bytes(8)  # a version the gateway never served
        report = {"applied": held, "base": unknown, "journal": [entry_to_value(entry)]}
        answer = await _post_report(gateway.uri, "dev-1", encode(report))
    # without the base the gateway cannot tell whether it changed the key: it keeps its value
    _, rejected = _decisions(answer["local"])
    assert JITTER in rejected
    assert get(_served(gateway), JITTER) == before
