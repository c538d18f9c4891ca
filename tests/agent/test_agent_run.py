"""``edgecfg agent run --observe`` as a real process against a real gateway."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from edgecfg.gateway.server import Gateway
from tests.gateway.helpers import free_udp_port


async def observing(gateway: Gateway, device: str) -> None:
    """Until the gateway holds an observation of ``device`` (bounded by the caller)."""
    while not gateway.config.observers.get(device):
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_an_observing_agent_stops_promptly_on_a_signal(
    gateway: Gateway, tmp_path: Path, signum: signal.Signals
) -> None:
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway", gateway.uri,
        "--device", "dev-1", "--state-dir", str(tmp_path), "--observe", "--ack-timeout", "0.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert agent.stdout is not None and agent.stderr is not None
    try:
        async with asyncio.timeout(60):  # process start-up and the first sync
            first = await agent.stdout.readline()
            assert first.startswith(b"dev-1: updated "), first
            await observing(gateway, "dev-1")
        # observing a config nobody changes: no notification will wake the agent
        sent = time.monotonic()
        agent.send_signal(signum)
        code = await asyncio.wait_for(agent.wait(), timeout=3.0)
        took = time.monotonic() - sent
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    assert code == 0
    assert took < 3.0
    assert await agent.stdout.read() == b"dev-1: stopped\n"
    assert await agent.stderr.read() == b""  # no traceback, no warnings


async def test_an_observing_agent_shows_reconnects_and_stops_while_waiting(
    tmp_path: Path,
) -> None:
    port = free_udp_port()  # nothing listens there
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway",
        f"coap://127.0.0.1:{port}", "--device", "dev-1", "--state-dir", str(tmp_path),
        "--observe", "--ack-timeout", "0.1", "--attempts", "2", "--backoff", "0.01",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert agent.stdout is not None and agent.stderr is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while not lines or b"reconnecting in" not in lines[-1]:
                lines.append(await agent.stderr.readline())
        agent.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(agent.wait(), timeout=3.0)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    assert code == 0
    assert lines[0].startswith(b"dev-1: attempt 1 of 2 failed: connection refused")
    assert lines[-1].startswith(
        f"dev-1: coap://127.0.0.1:{port}: connection refused (ICMP port unreachable); "
        "reconnecting in ".encode()
    )
    assert b"Traceback" not in await agent.stderr.read()
    assert await agent.stdout.read() == b"dev-1: stopped\n"
