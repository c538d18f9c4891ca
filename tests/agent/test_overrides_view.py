"""The device's journal of local changes (edgecfg/agent/overrides.py): the
cached effective view equals a full rebuild, whatever the order of changes and
reads (nested paths included), and what is pending follows a model across restarts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.agent.overrides import LocalOverrides
from edgecfg.core.ids import ETag
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


# ---------------------------------------------------------------- on disk, against a model

journal_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"), st.sampled_from(PATHS), st.one_of(st.just(UNSET), st.integers(-5, 5))
        ),
        st.tuples(st.just("ack"), st.just(()), st.integers(-1, 14)),
        st.tuples(st.just("note base"), st.just(()), st.integers(0, 3)),
        st.tuples(st.just("reopen"), st.just(()), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(journal_steps)
def test_pending_changes_and_their_base_follow_a_model_across_restarts(
    steps: list[tuple[str, tuple[str, ...], object]],
) -> None:
    """Sequences count up from 1, an acknowledgement only ever moves forward
    (a replayed or reordered one changes nothing), what is pending is what was
    set after it, and the kept base is the first one noted while something was
    pending; all of it survives reopening the directory."""
    with tempfile.TemporaryDirectory() as folder:
        local = LocalOverrides(Path(folder), node="n")
        entries: list[tuple[int, tuple[str, ...], object]] = []
        acknowledged, base = 0, None
        for number, (action, path, argument) in enumerate(steps, start=1):
            if action == "set":
                entry = local.set(path, argument, reason="r", now_ms=number)  # type: ignore[arg-type]
                entries.append((len(entries) + 1, path, argument))
                assert entry.sequence == len(entries)
            elif action == "ack":
                local.acknowledge(int(argument))  # type: ignore[arg-type]
                if int(argument) > acknowledged:  # type: ignore[arg-type]
                    acknowledged = min(int(argument), len(entries))  # type: ignore[arg-type]
            elif action == "note base":
                etag = ETag(bytes([int(argument)]) * 8)  # type: ignore[arg-type]
                local.note_base(etag)
                pending_now = [e for e in entries if e[0] > acknowledged]
                if pending_now and base is None:
                    base = etag
            else:
                local = LocalOverrides(Path(folder), node="n")
            pending = [e for e in entries if e[0] > acknowledged]
            if not pending:
                base = None
            assert [(e.sequence, e.path, e.value) for e in local.pending()] == pending
            assert local.base == base
            latest = {p: (s, v) for s, p, v in pending}
            assert {p: (e.sequence, e.value) for p, e in local.overrides().items()} == latest
