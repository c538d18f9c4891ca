"""A real gateway on loopback UDP for the gateway tests (tests/gateway/helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiocoap
import pytest

from edgecfg.gateway.server import Gateway
from tests.gateway.helpers import started_gateway


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A started gateway with the fixture schema and devices dev-1, dev-2."""
    async with started_gateway() as gateway:
        yield gateway


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    """A plain-CoAP aiocoap client context."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield context
    finally:
        await context.shutdown()
