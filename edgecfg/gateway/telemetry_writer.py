"""Telemetry ingest off the event loop, in batches (group commit).

A POST to ``/tel/{dev}`` waits for its pack to be stored, as before, but the
store work runs in one worker thread: packs that arrive while a batch is
being written wait together and go in the next transaction, so a burst costs
one commit per batch instead of one per pack, and the event loop keeps
answering (DESIGN §2: the gateway is the shell; the domain is
:class:`~edgecfg.fleet.telemetry.TelemetryService`).  A store that is not
safe across threads (the in-memory one of tests) is written on the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from edgecfg.fleet.telemetry import Pack, TelemetryService
from edgecfg.store import MemoryStore

MAX_BATCH: Final = 1024


class TelemetryWriter:
    """Writes packs through ``service`` in a worker thread, batched."""

    def __init__(self, service: TelemetryService, *, max_batch: int = MAX_BATCH) -> None:
        self.service = service
        self.max_batch = max_batch
        self.inline = isinstance(service.store, MemoryStore)  # not safe across threads
        self._pending: list[tuple[Pack, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="edgecfg-telemetry")
        self.batches = 0

    async def write(self, pack: Pack) -> None:
        """Store ``pack`` (with whatever else is waiting); raises what the store raised."""
        if self.inline:
            self.service.ingest([pack])
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((pack, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                await loop.run_in_executor(
                    self._thread, self.service.ingest, [pack for pack, _ in batch]
                )
            except Exception as error:  # each waiting request answers with it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                self.batches += 1
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def close(self) -> None:
        """Finish what is waiting, then stop the worker (a gateway started
        again gets a fresh one: its thread starts on the first batch)."""
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        worker, self._thread = (
            self._thread,
            ThreadPoolExecutor(1, thread_name_prefix="edgecfg-telemetry"),
        )
        await asyncio.get_running_loop().run_in_executor(None, worker.shutdown)
