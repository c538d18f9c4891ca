"""Fixtures shared by the whole test tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.paths import SHARED_DIR

# No test may depend on the machine being idle: Hypothesis's per-example
# deadline and its "too slow" health check fail on a busy machine, so they are
# off for the whole suite (each property still runs all its examples).
settings.register_profile("edgecfg", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("edgecfg")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` directory; skips the test cleanly when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (shared test vectors not checked out)")
    return SHARED_DIR
