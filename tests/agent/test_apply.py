"""The apply guard on a real state directory: trials, power cuts mid-trial
(a new guard on the same folder is the rebooted device), deadlines, refusals,
and what a revert never touches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edgecfg.agent.apply import (
    ApplyGuard,
    ApplyRefused,
    FileApplier,
    ReachabilityProbe,
    TrialPolicy,
)
from edgecfg.agent.coap import Link, LinkDown, Method, Reply, Traffic
from edgecfg.agent.fs_doubles import FaultyFileSystem, MemoryFileSystem
from edgecfg.agent.sealed_store import APPLY_FILE, LocalState
from edgecfg.core.apply import ProbeResult
from edgecfg.core.schema import Schema
from edgecfg.errors import UsageError
from edgecfg.wire.cbor import Encoded, decode
from edgecfg.wire.documents import read_schema
from tests.paths import SCHEMA

FIRST = Encoded.of({"net": {"coap": {"server_uri": "coap://127.0.0.1:5683"}}, "n": 1})
SECOND = Encoded.of({"net": {"coap": {"server_uri": "coap://127.0.0.1:5683"}}, "n": 2})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Verdict:
    """A probe that answers what it is told (or hangs, for a power cut)."""

    name = "fake"

    def __init__(self, ok: bool = True, *, hang: bool = False) -> None:
        self.ok = ok
        self.hang = hang
        self.seen: list[Encoded] = []

    async def check(self, config: Encoded) -> ProbeResult:
        self.seen.append(config)
        if self.hang:
            await asyncio.Event().wait()
        return ProbeResult(self.name, self.ok, "told so")


class Recorder:
    """An applier that records what it was given, and fails on cue."""

    name = "recorder"

    def __init__(self, fail_on: Sequence[int] = ()) -> None:
        self.applied: list[object] = []
        self.fail_on = set(fail_on)

    def apply(self, config: Encoded) -> None:
        self.applied.append(decode(config.cbor))
        if len(self.applied) in self.fail_on:
            raise ApplyRefused(f"refused call {len(self.applied)}")


def guard(folder: Path, *probes: Verdict, clock: Clock | None = None, **policy: Any) -> ApplyGuard:
    return ApplyGuard(
        LocalState(folder), appliers=[FileApplier(folder / "app.json")], probes=probes,
        policy=TrialPolicy(**policy), clock=clock or Clock(),
    )  # fmt: skip


def on_file(folder: Path) -> object:
    return json.loads((folder / "app.json").read_text("utf-8"))


async def started(folder: Path, *probes: Verdict, **policy: Any) -> ApplyGuard:
    """A guard whose device holds FIRST as its last-known-good."""
    first = guard(folder, *probes, **policy)
    await first.boot()
    assert await first.install(FIRST) is None  # the first config: good at once
    return first


async def cut_power_mid_probe(device: ApplyGuard, config: Encoded) -> None:
    """Start a trial of ``config`` and stop it while its probe runs (the power goes)."""
    trial = asyncio.ensure_future(device.install(config))
    while device.phase != "probing":
        await asyncio.sleep(0.01)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial


async def test_a_healthy_candidate_is_confirmed_and_written_to_the_file(tmp_path: Path) -> None:
    device = await started(tmp_path, Verdict())
    outcome = await device.install(SECOND)
    assert outcome is not None and outcome.verdict == "confirmed"
    assert outcome.probes == (ProbeResult("fake", True, "told so"),)
    assert on_file(tmp_path) == SECOND.tree
    assert device.state.held_is_good()
    assert await device.install(SECOND) is None  # held already: nothing to try
    device.delivered(1)
    assert device.unreported() == ((), 0)


async def test_a_failed_probe_reverts_the_store_and_the_file(tmp_path: Path) -> None:
    device = await started(tmp_path, Verdict(ok=False))
    outcome = await device.install(SECOND)
    assert outcome is not None
    assert (outcome.verdict, outcome.reason, outcome.detail) == (
        "reverted", "probe-failed", "fake: told so",
    )  # fmt: skip
    assert device.state.load_config() == FIRST
    assert device.state.held_is_good()
    assert on_file(tmp_path) == FIRST.tree


async def test_a_power_cut_mid_probe_comes_back_on_the_last_known_good(tmp_path: Path) -> None:
    device = await started(tmp_path, Verdict(hang=True))
    await cut_power_mid_probe(device, SECOND)
    assert on_file(tmp_path) == SECOND.tree  # it was applied, unconfirmed
    rebooted = guard(tmp_path, Verdict())
    await rebooted.boot()
    assert rebooted.state.load_config() == FIRST
    assert rebooted.state.held_is_good()
    assert on_file(tmp_path) == FIRST.tree
    (outcome,) = rebooted.unreported()[0]
    assert (outcome.verdict, outcome.reason, outcome.boots) == ("reverted", "reboot", 1)


async def test_within_the_boot_limit_a_rebooted_candidate_is_probed_again(
    tmp_path: Path,
) -> None:
    device = await started(tmp_path, Verdict(hang=True), boot_limit=1)
    await cut_power_mid_probe(device, SECOND)
    rebooted = guard(tmp_path, Verdict(), boot_limit=1)
    await rebooted.boot()
    assert rebooted.state.load_config() == SECOND and rebooted.state.held_is_good()
    (outcome,) = rebooted.unreported()[0]
    assert (outcome.verdict, outcome.boots) == ("confirmed", 1)


async def test_a_confirmed_candidate_survives_reboots(tmp_path: Path) -> None:
    device = await started(tmp_path, Verdict())
    await device.install(SECOND)
    for _ in range(3):
        rebooted = guard(tmp_path, Verdict(ok=False))
        await rebooted.boot()
        assert rebooted.state.load_config() == SECOND
        assert rebooted.state.held_is_good()


async def test_the_deadline_reverts_across_a_reboot(tmp_path: Path) -> None:
    clock = Clock()
    device = guard(tmp_path, Verdict(hang=True), clock=clock, deadline_s=60.0, boot_limit=5)
    await device.boot()
    await device.install(FIRST)
    await cut_power_mid_probe(device, SECOND)
    clock.now += 61.0
    rebooted = guard(tmp_path, Verdict(), clock=clock, deadline_s=60.0, boot_limit=5)
    await rebooted.boot()
    assert rebooted.state.load_config() == FIRST
    (outcome,) = rebooted.unreported()[0]
    assert outcome.reason == "deadline"


@pytest.mark.parametrize(("later_s", "reason"), [(0.0, "interrupted"), (60.0, "deadline")])
async def test_a_trial_stopped_midway_is_reverted_when_the_next_sync_settles_it(
    tmp_path: Path, later_s: float, reason: str
) -> None:
    clock = Clock()
    device = guard(tmp_path, Verdict(hang=True), clock=clock, deadline_s=60.0)
    await device.install(FIRST)
    await cut_power_mid_probe(device, SECOND)  # stopped, not rebooted
    clock.now += later_s
    await device.settle()
    assert device.phase == "idle"
    assert device.state.load_config() == FIRST
    (outcome,) = device.unreported()[0]
    assert outcome.reason == reason
    await device.settle()  # nothing left to settle
    assert len(device.unreported()[0]) == 1


async def test_a_new_config_settles_a_trial_stopped_midway_first(tmp_path: Path) -> None:
    device = guard(tmp_path, Verdict(hang=True))
    await device.install(FIRST)
    await cut_power_mid_probe(device, SECOND)
    device.probes = (Verdict(),)
    third = Encoded.of({"n": 3})
    outcome = await device.install(third)
    assert outcome is not None and outcome.verdict == "confirmed"
    assert [o.reason for o in device.unreported()[0]] == ["interrupted", None]
    assert device.state.load_config() == third


async def test_a_lost_apply_record_with_an_unconfirmed_generation_reverts_at_boot(
    tmp_path: Path,
) -> None:
    device = await started(tmp_path, Verdict(hang=True))
    await cut_power_mid_probe(device, SECOND)
    (tmp_path / APPLY_FILE).write_bytes(b"garbage that does not open")
    rebooted = guard(tmp_path, Verdict())
    await rebooted.boot()
    assert rebooted.state.load_config() == FIRST
    assert rebooted.state.held_is_good()
    (outcome,) = rebooted.unreported()[0]
    assert (outcome.candidate, outcome.reason) == (SECOND.etag, "reboot")


async def test_a_candidate_the_schema_refuses_is_never_written(tmp_path: Path) -> None:
    schema: Schema = read_schema(SCHEMA.read_bytes(), "json")
    device = await started(tmp_path, Verdict(), schema=schema)
    generations = device.state.store.generation()
    bad = Encoded.of({"net": {"uplink": {"interval_s": 1}}})
    outcome = await device.install(bad)
    assert outcome is not None and outcome.reason == "apply-failed"
    assert "net.uplink.interval_s" in outcome.detail
    assert device.state.store.generation() == generations


async def test_an_applier_failure_reverts_and_a_failure_on_the_way_back_is_reported(
    tmp_path: Path,
) -> None:
    recorder = Recorder(fail_on=(2, 3))  # 1: FIRST, 2: SECOND (fails), 3: FIRST again (fails)
    device = ApplyGuard(LocalState(tmp_path), appliers=[recorder], probes=[Verdict()])
    await device.install(FIRST)
    outcome = await device.install(SECOND)
    assert outcome is not None and outcome.reason == "apply-failed"
    assert outcome.detail == (
        "recorder: refused call 2; then recorder failed on the last-known-good: refused call 3"
    )
    assert device.state.load_config() == FIRST
    assert recorder.applied == [FIRST.tree, SECOND.tree, FIRST.tree]


async def test_an_applier_failing_on_the_first_config_says_so(tmp_path: Path) -> None:
    device = ApplyGuard(LocalState(tmp_path), appliers=[Recorder(fail_on=(1,))])
    with pytest.raises(ApplyRefused, match=r"first configuration .* is stored, but recorder"):
        await device.install(FIRST)
    assert device.state.load_config() == FIRST


async def test_no_probe_is_no_proof_of_health(tmp_path: Path) -> None:
    device = ApplyGuard(LocalState(tmp_path))
    await device.install(FIRST)
    outcome = await device.install(SECOND)
    assert outcome is not None and outcome.reason == "probe-failed"


async def test_a_probe_that_hangs_or_raises_fails(tmp_path: Path) -> None:
    class Raising:
        name = "raising"

        async def check(self, config: Encoded) -> ProbeResult:
            raise LinkDown("gone")

    device = ApplyGuard(
        LocalState(tmp_path), probes=[Verdict(hang=True), Raising()],
        policy=TrialPolicy(probe_timeout_s=0.05),
    )  # fmt: skip
    await device.install(FIRST)
    outcome = await device.install(SECOND)
    assert outcome is not None
    assert [(p.name, p.ok, p.detail) for p in outcome.probes] == [
        ("fake", False, "no verdict in 0.05 s"), ("raising", False, "gone"),
    ]  # fmt: skip


async def test_a_revert_never_touches_the_journal_or_the_oscore_state(tmp_path: Path) -> None:
    journal = tmp_path / "local" / "journal.bin"
    sequence = tmp_path / "oscore" / "sequence.json"
    for file, content in ((journal, b"\x01journal"), (sequence, b'{"next": 41}')):
        file.parent.mkdir(parents=True)
        file.write_bytes(content)
    device = await started(tmp_path, Verdict(ok=False))
    sequence.write_bytes(b'{"next": 42}')  # used meanwhile: must not go back to 41
    await device.install(SECOND)
    assert device.state.load_config() == FIRST
    assert journal.read_bytes() == b"\x01journal"
    assert sequence.read_bytes() == b'{"next": 42}'


def test_the_file_applier_writes_json_or_cbor_atomically_and_says_what_failed() -> None:
    fs = MemoryFileSystem()
    FileApplier("/etc/app.json", fs=fs).apply(FIRST)
    assert json.loads(fs.files["/etc/app.json"]) == FIRST.tree
    FileApplier("/etc/app.cbor", fmt="cbor", fs=fs).apply(FIRST)
    assert fs.files["/etc/app.cbor"] == FIRST.cbor
    with pytest.raises(UsageError, match="json or cbor"):
        FileApplier("/x", fmt="yaml")
    with pytest.raises(UsageError, match="bytes"):
        FileApplier("/x", fs=fs).apply(Encoded.of({"key": b"\x00"}))
    broken = FaultyFileSystem(fs, fail_at=1)
    with pytest.raises(ApplyRefused, match=r"/etc/app\.json"):
        FileApplier("/etc/app.json", fs=broken).apply(SECOND)


class Answering:
    """A link that answers every request with ``code`` (or fails)."""

    def __init__(self, code: str | None, base: str = "coap://gw:5683") -> None:
        self.code = code
        self.base = base
        self.traffic = Traffic()
        self.asked: list[tuple[Method, tuple[str, ...], tuple[bytes, ...]]] = []

    def observe(self, path: Sequence[str]) -> AsyncIterator[Reply]:
        raise NotImplementedError

    async def request(
        self, method: Method, path: Sequence[str], *, query: Sequence[str] = (),
        payload: bytes = b"", content_format: int | None = None, etags: Sequence[bytes] = (),
        block2: tuple[int, int] | None = None,
    ) -> Reply:  # fmt: skip
        self.asked.append((method, tuple(path), tuple(etags)))
        if self.code is None:
            raise LinkDown("coap://gw:5683: no answer", cause="no answer", kind="timeout")
        return Reply(self.code)


@pytest.mark.parametrize(
    ("code", "ok"), [("2.03", True), ("5.03", True), ("4.04", False), (None, False)]
)
async def test_the_reachability_probe_asks_the_gateway_with_the_candidate_etag(
    code: str | None, ok: bool
) -> None:
    link = Answering(code)
    probe = ReachabilityProbe("dev-1", link)
    config = Encoded.of({"n": 1})  # sets no address: the agent's own link
    result = await probe.check(config)
    assert result.ok is ok
    assert result.detail.startswith("coap://gw:5683")
    assert link.asked == [("GET", ("cfg", "dev-1"), (config.etag,))]


async def test_the_reachability_probe_uses_the_address_and_timeouts_of_the_candidate() -> None:
    opened: list[tuple[str, float | None, int | None]] = []
    other = Answering(None, base="coap://10.0.0.9:5683")

    def connect(address: str, ack: float | None, retransmit: int | None) -> Link:
        opened.append((address, ack, retransmit))
        return other

    probe = ReachabilityProbe("dev-1", Answering("2.05"), connect=connect)
    config = Encoded.of(
        {"net": {"coap": {"server_uri": "coap://10.0.0.9:5683", "ack_timeout_s": 1.5,
                          "max_retransmit": 2}}}
    )  # fmt: skip
    result = await probe.check(config)
    assert opened == [("coap://10.0.0.9:5683", 1.5, 2)]
    assert (result.ok, result.detail) == (False, "coap://10.0.0.9:5683: no answer")
    assert probe.settings(Encoded.of({"net": {"coap": {"server_uri": "coaps://x"}}}).tree) == (
        None, None, None,
    )  # fmt: skip


async def test_the_reachability_probe_reports_an_address_it_cannot_use() -> None:
    def refuse(address: str, ack: float | None, retransmit: int | None) -> Link:
        raise UsageError(f"gateway {address!r} must look like coap://HOST:PORT")

    probe = ReachabilityProbe("dev-1", Answering("2.05"), connect=refuse)
    config = Encoded.of({"net": {"coap": {"server_uri": "coap://[bad"}}})
    result = await probe.check(config)
    assert not result.ok and "must look like" in result.detail


class Secured(Answering):
    """The agent's OSCORE-protected link (it carries credentials)."""

    credentials = "creds.json"


async def test_with_oscore_new_timeouts_are_probed_on_the_agents_own_link() -> None:
    opened: list[str] = []

    def connect(address: str, ack: float | None, retransmit: int | None) -> Link:
        opened.append(address)
        return Answering("4.01")

    own = Secured("2.03")
    probe = ReachabilityProbe("dev-1", own, connect=connect)
    config = Encoded.of({"net": {"coap": {"ack_timeout_s": 9.0, "max_retransmit": 1}}})
    result = await probe.check(config)
    assert result.ok and opened == [] and len(own.asked) == 1


async def test_with_oscore_a_new_address_answering_4_01_is_reachable() -> None:
    def connect(address: str, ack: float | None, retransmit: int | None) -> Link:
        return Answering("4.01", base=address)

    probe = ReachabilityProbe("dev-1", Secured("2.03"), connect=connect)
    moved = Encoded.of({"net": {"coap": {"server_uri": "coap://10.0.0.9:5683"}}})
    result = await probe.check(moved)
    assert result.ok and "wants OSCORE" in result.detail
    plain = ReachabilityProbe("dev-1", Answering("2.03"), connect=connect)
    refused = await plain.check(moved)  # without OSCORE, 4.01 is a refusal
    assert not refused.ok and "refused" in refused.detail
