"""Virtual time for the agent's driver: ``Agent(clock=vt.clock, sleep=vt.sleep)``.

A backoff or a gateway's Max-Age then costs no real time: ``sleep`` records
the delay, moves the clock by it and only yields to the event loop (so a
stop event or the gateway's tasks still run).
"""

from __future__ import annotations

import asyncio


class VirtualTime:
    """A monotonic clock that only moves when the agent sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await asyncio.sleep(0)
