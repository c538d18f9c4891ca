"""``edgecfg bench delta`` on small corpora: it counts exactly, prints the
worst deltas, and fails when a pair does not round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.bench import delta as bench
from edgecfg.core.tree import Value
from edgecfg.errors import CommandError, DeltaError
from tests.cli.helpers import run


def test_bench_delta_on_a_small_corpus_prints_targets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    versions = [{"a": {"x": i, "y": "text " * 10}, "b": list(range(i))} for i in range(1, 8)]
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"repo": "r", "path": "p", "tree": tree}) for tree in versions)
    )
    code, out, _ = run(capsys, "bench", "delta", str(corpus), "--leaves", "50", "--runs", "3")
    assert code == 0
    assert "tiny" in out
    assert "zstd-19 dict" in out
    assert "median <= 2.8%" in out
    assert "6 changed pairs (changed pair = consecutive versions" in out
    assert "p99%" in out
    assert "PASS  all 6 changed pairs round-trip" in out
    assert "a chain (each delta applied to the last result; CPU time)" in out


def test_bench_delta_times_a_chain_of_versions_as_a_device_applies_it() -> None:
    figures = bench.speed(leaves=60, runs=4)
    for name in ("chain_make", "chain_apply", "chain_apply_cpu", "chain_make_plus_apply_cpu"):
        assert figures[f"{name}_ms_p50"] > 0
        assert figures[f"{name}_ms_p99"] >= figures[f"{name}_ms_p50"]
        for meeting in ("first", "second"):
            assert figures[f"chain_{meeting}_{name.removeprefix('chain_')}_ms_p50"] > 0


def test_bench_delta_takes_each_calls_least_time_over_the_repeats() -> None:
    figures = bench.speed(leaves=60, runs=6, repeat=3)
    assert figures["repeat"] == 3
    # Each call's figure is the least of its three times, so no percentile of
    # the best can exceed the same percentile of the first run alone.
    for name in ("apply", "chain_apply"):
        assert figures[f"{name}_ms_p99"] <= figures[f"{name}_single_ms_p99"]


def _history_dir(tmp_path: Path) -> Path:
    """Two histories in a directory: a map config and a list-topped one (automations)."""
    folder = tmp_path / "histories"
    folder.mkdir()
    maps = [{"a": {"x": i, "y": "text " * 10}} for i in range(4)]
    lists = [[{"id": str(n), "alias": f"lamp {n}"} for n in range(i + 2)] for i in range(4)]
    for name, versions in (("maps", maps), ("lists", lists)):
        (folder / f"{name}.jsonl").write_text(
            "\n".join(json.dumps({"repo": name, "path": "p", "tree": t}) for t in versions)
        )
    return folder


def test_bench_delta_takes_a_corpus_directory_with_list_tops_and_prints_the_worst(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = _history_dir(tmp_path)
    code, out, _ = run(
        capsys, "bench", "delta", "--corpus", str(folder), "--worst", "2",
        "--leaves", "50", "--runs", "3",
    )  # fmt: skip
    assert code == 0
    assert "6 changed pairs" in out
    assert "lists " in out
    assert "the 2 largest deltas" in out
    assert "ops: " in out


def test_bench_delta_exits_non_zero_when_a_pair_does_not_round_trip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bench.apply_delta

    def broken(old: Value, delta: bytes) -> Value:
        result = real(old, delta)
        return ["not", "the", "target"] if isinstance(result, list) else result

    monkeypatch.setattr(bench, "apply_delta", broken)
    folder = _history_dir(tmp_path)
    code, out, _ = run(
        capsys, "bench", "delta", "--corpus", str(folder), "--leaves", "50", "--runs", "3"
    )
    assert code == 1
    assert "FAIL  3 of 6 changed pairs do not round-trip" in out
    assert "lists p #1" in out


def test_bench_delta_names_a_missing_corpus(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "bench", "delta", "--corpus", str(tmp_path / "nowhere"))
    assert code == 1
    assert "no such file or directory" in err


def test_bench_delta_refuses_a_malformed_corpus_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"repo": "r"}\n')
    code, _, err = run(capsys, "bench", "delta", str(corpus))
    assert code == 1
    assert f"{corpus}:1: not a corpus record" in err


def test_checking_a_corpus_reads_every_record_and_names_a_bad_line(tmp_path: Path) -> None:
    lines = [json.dumps({"repo": "r", "path": "p", "tree": [i, {"a": i}]}) for i in range(3)]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines) + "\n\n")
    assert bench.check_corpus([good]) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines, '{"repo": "r", "path": "p", "tree": [1, 2]']))
    with pytest.raises(CommandError, match=f"{bad}:4: not a corpus record"):
        bench.check_corpus([good, bad])


def test_bench_delta_names_a_pair_whose_delta_raises(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bench.make_delta

    def failing(old: Value, new: Value) -> bytes:
        if isinstance(new, list):
            raise DeltaError("corrupt delta: expected a map at the top level")
        return real(old, new)

    monkeypatch.setattr(bench, "make_delta", failing)
    code, out, _ = run(
        capsys, "bench", "delta", "--corpus", str(_history_dir(tmp_path)), "--runs", "2",
        "--leaves", "50", "--json",
    )  # fmt: skip
    document = json.loads(out)
    assert code == 1
    assert document["changed_pairs"] == 6
    assert len(document["round_trip_failures"]) == 3
    assert "expected a map" in document["round_trip_failures"][0]["error"]
