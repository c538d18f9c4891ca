"""The agent tests run against the same real gateway as the gateway tests."""

from tests.gateway.conftest import gateway

__all__ = ["gateway"]
