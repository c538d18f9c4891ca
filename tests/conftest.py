"""Fixtures shared by the whole test tree."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# No test may depend on the machine being idle: Hypothesis's per-example
# deadline and its "too slow" health check fail on a busy machine, so they are
# off for the whole suite (each property still runs all its examples).
settings.register_profile("edgecfg", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("edgecfg")

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
"""``../shared`` beside the repository: test vectors from outside the project."""


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` directory; skips the test cleanly when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (shared test vectors not checked out)")
    return SHARED_DIR


# ---------------------------------------------------------------- strategies
# Hypothesis strategies for values of the configuration model (DESIGN §3),
# shared by the core and wire suites (``from tests.conftest import ...``).

NAN_WITH_PAYLOAD = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
NEGATIVE_NAN = struct.unpack(">d", bytes.fromhex("fff8000000000000"))[0]

model_ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
model_floats = st.floats() | st.sampled_from(
    [0.0, -0.0, math.inf, -math.inf, math.nan, NAN_WITH_PAYLOAD, NEGATIVE_NAN]
)
model_scalars = (
    st.none()
    | st.booleans()
    | model_ints
    | model_floats
    | st.text(max_size=12)
    | st.binary(max_size=12)
)
model_keys = st.text(max_size=8)
model_values = st.recursive(
    model_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(model_keys, children, max_size=4)
    ),
    max_leaves=24,
)
model_trees = st.dictionaries(model_keys, model_values, max_size=6)

# Values that Python's == confuses (1 / 1.0 / True, 0.0 / -0.0, NaN), drawn
# from a tiny domain so that pairs of them are often equal.
confusable_scalars = st.sampled_from(
    [
        0, 1, -1, 0.0, -0.0, 1.0, -1.0, math.nan, NEGATIVE_NAN, NAN_WITH_PAYLOAD,
        math.inf, -math.inf, True, False, None, "", "1", b"", b"1", 2**64 - 1, -(2**64),
    ]
)  # fmt: skip
confusable_values = st.recursive(
    confusable_scalars,
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)
    ),
    max_leaves=4,
)
