"""The cached effective view of local overrides equals a full rebuild, whatever
the order of changes and reads (nested paths included)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.agent.overrides import LocalOverrides
from edgecfg.core.tree import UNSET, Tree

APPLIED: Tree = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
PATHS = [("a",), ("a", "b"), ("a", "c"), ("a", "c", "d"), ("a", "x"), ("e",), ("f",)]

changes = st.lists(
    st.tuples(
        st.sampled_from(PATHS),
        st.one_of(st.just(UNSET), st.integers(-5, 5)),
        st.booleans(),  # read the effective config after this change
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(changes)
def test_incremental_view_equals_a_rebuild(
    steps: list[tuple[tuple[str, ...], object, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        local = LocalOverrides(Path(folder), node="n")
        for number, (path, value, read) in enumerate(steps, start=1):
            local.set(path, value, reason="", now_ms=number)  # type: ignore[arg-type]
            if read:
                incremental = local.effective(APPLIED)
                assert incremental == LocalOverrides(Path(folder), node="n").effective(APPLIED)
        final = local.effective(APPLIED)
        assert final == LocalOverrides(Path(folder), node="n").effective(APPLIED)


def test_a_dropped_override_gives_back_the_applied_value(tmp_path: Path) -> None:
    local = LocalOverrides(tmp_path, node="n")
    local.set(("a", "b"), 9, reason="", now_ms=1)
    assert local.effective(APPLIED) == {"a": {"b": 9, "c": {"d": 2}}, "e": 3}
    local.set(("a", "b"), UNSET, reason="", now_ms=2)
    assert local.effective(APPLIED) == APPLIED
    local.set(("f",), 1, reason="", now_ms=3)  # a key the applied config lacks
    local.set(("f",), UNSET, reason="", now_ms=4)
    assert local.effective(APPLIED) == APPLIED
