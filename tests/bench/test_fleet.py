"""``edgecfg bench fleet`` on a small fleet: every figure and target is
there, the fleet is shaped like a real one, and the served versions cost a
few bytes each in the database (no timing is judged here)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
from pathlib import Path

import pytest

from edgecfg.bench import fleet as bench
from edgecfg.bench.load import run_bare
from edgecfg.bench.measure import free_udp_port
from edgecfg.errors import CommandError
from edgecfg.store import SQLiteStore
from tests.cli.helpers import run

KEYS = {
    "devices", "startup_s", "idle_cpu_pct", "rss_mib", "db_bytes", "cpu_ratio_valid",
    "cpu_ratio_delta", "cpu_ratio_first_after_edit", "p99_ms", "retransmissions",
    "visible_delay_s", "db_growth_per_device", "targets",
}  # fmt: skip


def test_bench_fleet_prints_every_figure_of_issue_12_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "bench", "fleet", "--devices", "300", "--sample", "60",
                       "--idle", "1", "--json")  # fmt: skip
    assert code == 0
    (line,) = out.splitlines()
    figures = json.loads(line)
    assert set(figures) >= KEYS
    assert figures["devices"] == 300
    assert figures["sample"] >= 60
    assert figures["delta_bytes"] < 64  # one value changed: a small delta, not a config
    assert 0 < figures["db_growth_per_device"] < 256  # a vector per version, not a config
    assert set(figures["targets"]) >= {"start-up <= 2 s", "RSS <= 1 GiB"}


def test_the_fleet_gives_every_device_its_own_layer_and_three_groups(tmp_path: Path) -> None:
    built = bench.build(tmp_path / "fleet.db", 120, seed=3)
    assert len(built.devices) == 120
    assert sorted(d for stack in built.stacks for d in stack) == built.devices
    with SQLiteStore(tmp_path / "fleet.db") as store:
        assert len(store.layer_ids("device/")) == 120
        record = store.get_device(built.devices[0])
        assert set(record.groups) == {"region", "hardware", "function"}


def test_a_sample_is_made_of_whole_stacks(tmp_path: Path) -> None:
    built = bench.build(tmp_path / "fleet.db", 200, seed=3)
    chosen = set(bench.sample_of(built, 50, random.Random(1)))
    assert len(chosen) >= 50
    for stack in built.stacks:
        assert set(stack) <= chosen or not set(stack) & chosen


@pytest.mark.parametrize("text", ["", "10,x", "0", "-5"])
def test_bad_sizes_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(CommandError, match="--devices"):
        bench.run_fleet_bench(devices=text, sample=100, seed=1, as_json=True)


async def test_the_load_driver_moves_to_a_fresh_port_before_message_ids_come_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One driver plays thousands of devices: past MIDS_PER_SOCKET requests
    it sends from a new source port, so the gateway never takes a new
    request for a duplicate of one with the same address and message ID."""
    monkeypatch.setattr(bench, "MIDS_PER_SOCKET", 4)
    port = free_udp_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=run_bare, args=({"bare": 4}, port, ready), daemon=True)
    server.start()
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(
        lambda: bench.RawClient(("127.0.0.1", port)), local_addr=("127.0.0.1", 0)
    )
    try:
        assert await loop.run_in_executor(None, ready.wait, 60)
        answers = [await client.get(bench.Request(("bare",))) for _ in range(10)]
        ports = {t.get_extra_info("sockname")[1] for t in client.transports}
    finally:
        client.close()
        server.kill()
        server.join()
    assert all(str(a.code) == "2.05 Content" for a in answers)
    assert len(client.transports) == 3 and len(ports) == 3  # 4 + 4 + 2 requests
    assert client.retransmissions == 0
