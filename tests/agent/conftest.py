"""The agent tests run against the same real gateway as the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from edgecfg.gateway.server import Gateway
from tests.gateway.helpers import started_gateway


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A started gateway with the fixture schema and devices dev-1, dev-2."""
    async with started_gateway() as gateway:
        yield gateway
