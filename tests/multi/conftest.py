"""Fixtures of the several-gateways tests: the gateway tests' plain-CoAP client."""

from tests.gateway.conftest import client

__all__ = ["client"]
