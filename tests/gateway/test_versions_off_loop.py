"""The version vectors a gateway served are written off its event loop
(issue 12: blocking store work never runs on the loop's thread), one write at
a time, and a write the store refuses is kept for the next one."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.core.ids import ETag
from edgecfg.errors import StoreError
from edgecfg.gateway.server import Gateway
from edgecfg.store import SQLiteStore
from tests.gateway.helpers import ask, started_gateway

Pending = Mapping[tuple[ETag, bytes], None]


async def served(gateway: Gateway) -> ETag:
    """One device's config asked for over CoAP: its ETag."""
    client = await aiocoap.Context.create_client_context()
    try:
        answer = await ask(client, gateway, Code.GET, "/cfg/dev-1")
    finally:
        await client.shutdown()
    assert answer.code == Code.CONTENT
    return ETag(answer.opt.etag)


async def test_served_versions_are_written_by_the_store_thread(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "fleet.db") as store:
        async with started_gateway(store) as gateway:
            writers: list[str] = []
            write = gateway.service.write_versions

            def spying(pending: Pending) -> None:
                writers.append(threading.current_thread().name)
                write(pending)

            gateway.service.write_versions = spying
            etag = await served(gateway)
            gateway.housekeeping(time.monotonic())
            await gateway.stop()  # waits for the write under way
            assert writers and all(name.startswith("edgecfg-store") for name in writers)
            assert threading.current_thread().name not in writers
            assert store.get_versions(etag)  # written


async def test_a_write_the_store_refuses_is_kept_for_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SQLiteStore(tmp_path / "fleet.db") as store:
        async with started_gateway(store) as gateway:
            write = gateway.service.write_versions
            refusals = [1]

            def failing_once(pending: Pending) -> None:
                if refusals:
                    refusals.pop()
                    raise StoreError("database is locked")
                write(pending)

            gateway.service.write_versions = failing_once
            etag = await served(gateway)
            gateway.housekeeping(time.monotonic())
            task = gateway._versions  # pyright: ignore[reportPrivateUsage]
            assert task is not None
            await task
            assert not store.get_versions(etag)  # refused, kept
            assert "kept to retry" in caplog.text
            gateway.housekeeping(time.monotonic())
            await gateway.stop()
            assert store.get_versions(etag)
