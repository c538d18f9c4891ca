"""``edgecfg bench ...``: measurements printed next to baselines from the same run.

``bench delta`` replays configuration histories (JSON lines in the format of
``../shared/corpus``: ``{"repo", "path", "tree", ...}`` per version, oldest
first per ``(repo, path)``; ``--corpus DIR`` takes every ``*.jsonl`` of a
directory), makes and applies a delta for every changed pair, and prints size
and speed for edgecfg and for the baselines of :mod:`edgecfg.bench.baselines`.

A **changed pair** is two consecutive versions of one ``(repo, path)`` whose
trees differ (their canonical CBOR differs); pairs with equal trees cost a
sync nothing (2.03) and are only counted.  The bench exits non-zero when any
pair does not round-trip, after naming every such pair.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecfg.bench.baselines import full_lz4, json_patch_cbor, zstd_dictionary
from edgecfg.bench.measure import median, percentile
from edgecfg.core import delta as structural
from edgecfg.core.tree import Tree, Value, check_model, flatten, is_map, values_equal
from edgecfg.errors import CommandError, EdgecfgError
from edgecfg.sim.configs import Shape, generate_config, generate_history, mutate_config
from edgecfg.wire.cbor import Encoded, decode, encode, etag
from edgecfg.wire.delta import (
    apply_delta,
    apply_delta_encoded,
    delta_kind,
    forget_bases,
    make_delta,
)
from edgecfg.wire.delta_ops import KeyBook, encode_ops

DEFAULT_CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
TECHNIQUES = ("edgecfg", "zstd-19 dict", "JSON Patch CBOR", "full lz4")
CHANGED_PAIR = (
    "changed pair = consecutive versions of one (repo, path) whose trees differ "
    "(canonical CBOR differs)"
)


@dataclass(frozen=True, slots=True)
class Pair:
    source: str
    old: Value
    new: Value
    single_edit: bool
    where: str = ""
    """``repo path #version`` for reports."""


@dataclass(slots=True)
class Tally:
    """Sizes (bytes and % of the new canonical CBOR) of one technique on one source."""

    percents: list[float] = field(default_factory=lambda: [])
    single_bytes: list[int] = field(default_factory=lambda: [])
    make_us: list[float] = field(default_factory=lambda: [])
    apply_us: list[float] = field(default_factory=lambda: [])
    larger_than_zstd: int = 0

    def add(self, size: int, target_size: int, single: bool) -> None:
        self.percents.append(100.0 * size / target_size)
        if single:
            self.single_bytes.append(size)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One pair's edgecfg delta: its size and kind, or why it failed."""

    pair: Pair
    size: int
    target_size: int
    kind: str
    error: str = ""


def corpus_files(given: Sequence[str]) -> list[Path]:
    """``*.jsonl`` files from the names given: directories are expanded, files kept."""
    files: list[Path] = []
    for name in given:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise CommandError(f"{path}: no *.jsonl files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{path}: no such file or directory")
    return files


def load_pairs(files: Sequence[Path]) -> tuple[list[Pair], int]:
    """Changed pairs (see :data:`CHANGED_PAIR`) from corpus files, and the count
    of unchanged pairs.  A tree may be any model value (a list at the top
    level, as in Home Assistant's ``automations.yaml``)."""
    pairs: list[Pair] = []
    unchanged = 0
    for file in files:
        previous: dict[tuple[str, str], tuple[Value, int]] = {}
        for number, key, tree in _records(file):
            old, version = previous.get(key, (None, -1))
            previous[key] = (tree, version + 1)
            if version < 0:
                continue
            if values_equal(old, tree):
                unchanged += 1
            else:
                where = f"{key[0]} {key[1]} #{version + 1} ({file.name}:{number})"
                pairs.append(Pair(file.stem, old, tree, _single_edit(old, tree), where))
    return pairs, unchanged


def check_corpus(files: Sequence[Path]) -> int:
    """Read every record of the corpus files as :func:`load_pairs` does, keeping
    none: a malformed corpus is refused (:class:`CommandError` naming the file
    and line) before a long run, without building its pairs twice.  Returns
    the number of records."""
    return sum(1 for file in files for _record in _records(file))


def _records(file: Path) -> Iterator[tuple[int, tuple[str, str], Value]]:
    """(line number, (repo, path), tree) of each record of one corpus file, in order."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"{file}: cannot read: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (str(record["repo"]), str(record["path"]))
            tree = check_model(record["tree"])
        except (ValueError, KeyError, TypeError, EdgecfgError) as error:
            raise CommandError(f"{file}:{number}: not a corpus record: {error}") from None
        yield number, key, tree


def synthetic_pairs(seed: int = 7) -> tuple[list[Pair], int]:
    """Pairs from the synthetic generator, one source per shape."""
    pairs: list[Pair] = []
    unchanged = 0
    shapes: list[tuple[Shape, int]] = [
        ("flat", 80),
        ("nested", 150),
        ("mixed", 400),
        ("mixed", 1000),
    ]
    for offset, (shape, leaves) in enumerate(shapes):
        history = generate_history(seed + offset, leaves=leaves, versions=60, shape=shape)
        for old, new in itertools.pairwise(history):
            if values_equal(old, new):
                unchanged += 1
            else:
                pairs.append(Pair(f"synthetic-{shape}-{leaves}", old, new, _single_edit(old, new)))
    return pairs, unchanged


def _single_edit(old: Value, new: Value) -> bool:
    """Exactly one leaf value of a map replaced, nothing added or removed."""
    if not (is_map(old) and is_map(new)):
        return False
    a, b = flatten(old), flatten(new)
    if a.keys() != b.keys():
        return False
    return sum(1 for path in a if not values_equal(a[path], b[path])) == 1


def _timed(function: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = function()
    return result, (time.perf_counter() - start) * 1e6


def measure(pairs: Iterable[Pair]) -> tuple[dict[str, dict[str, Tally]], list[Outcome]]:
    """Tallies per source and technique (``"all"`` aggregates), and every pair's outcome.

    A pair whose delta cannot be made, cannot be applied or does not reproduce
    the new version is an outcome with ``error`` set; it is not tallied.
    """
    tallies: dict[str, dict[str, Tally]] = {}
    outcomes: list[Outcome] = []
    for pair in pairs:
        target_size = len(encode(pair.new))
        try:
            delta, make_us = _timed(lambda p=pair: make_delta(p.old, p.new))
            assert isinstance(delta, bytes)
            result, apply_us = _timed(lambda p=pair, d=delta: apply_delta(p.old, d))
        except Exception as error:  # a bench names every failing pair, whatever went wrong
            outcomes.append(Outcome(pair, 0, target_size, "-", f"{type(error).__name__}: {error}"))
            continue
        kind = delta_kind(delta)
        if encode(result) != encode(pair.new):  # type: ignore[arg-type]
            outcomes.append(
                Outcome(pair, len(delta), target_size, kind, "result differs from the new version")
            )
            continue
        outcomes.append(Outcome(pair, len(delta), target_size, kind))
        zstd, zstd_us = _timed(lambda p=pair: zstd_dictionary(p.old, p.new))
        assert isinstance(zstd, bytes)
        sizes = {
            "edgecfg": (len(delta), make_us, apply_us),
            "zstd-19 dict": (len(zstd), zstd_us, 0.0),
            "JSON Patch CBOR": (len(json_patch_cbor(pair.old, pair.new)), 0.0, 0.0),
            "full lz4": (len(full_lz4(pair.new)), 0.0, 0.0),
        }
        for source in (pair.source, "all"):
            row = tallies.setdefault(source, {name: Tally() for name in TECHNIQUES})
            for name, (size, made, applied) in sizes.items():
                row[name].add(size, target_size, pair.single_edit)
                if made:
                    row[name].make_us.append(made)
                if applied:
                    row[name].apply_us.append(applied)
            if len(delta) > len(zstd):
                row["edgecfg"].larger_than_zstd += 1
    return tallies, outcomes


def op_mix(old: Value, new: Value) -> str:
    """What a delta is made of: each operation kind with its count and encoded bytes."""
    book = KeyBook(old)
    ops = structural.diff(old, new, weigh=lambda op: len(encode_ops([op], book)))
    counts: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    for op in ops:
        name = type(op).__name__
        counts[name] += 1
        weights[name] += len(encode_ops([op], book))
    return ", ".join(
        f"{name} x{counts[name]} {weights[name]} B" for name, _ in weights.most_common()
    )


def worst(outcomes: Sequence[Outcome], count: int) -> list[str]:
    """The ``count`` largest deltas (as % of the new version), with their op mix."""
    good = [o for o in outcomes if not o.error]
    ranked = sorted(good, key=lambda o: o.size / o.target_size, reverse=True)[:count]
    lines = [f"the {len(ranked)} largest deltas (% of the new version) and their op mix:"]
    for outcome in ranked:
        pair = outcome.pair
        lines.append(
            f"  {100 * outcome.size / outcome.target_size:6.2f}%  {outcome.size:>6} B "
            f"{outcome.kind:<9} {pair.where or pair.source}\n"
            f"           ops: {op_mix(pair.old, pair.new) or '-'}"
        )
    return lines


def summarize(tally: Tally) -> dict[str, float]:
    """The figures printed for one tally."""
    pairs = len(tally.percents)
    return {
        "pairs": pairs,
        "median_pct": median(tally.percents),
        "p90_pct": percentile(tally.percents, 0.9),
        "p99_pct": percentile(tally.percents, 0.99),
        "max_pct": max(tally.percents, default=float("nan")),
        "single_edits": len(tally.single_bytes),
        "single_edit_median_bytes": median([float(v) for v in tally.single_bytes]),
        "larger_than_zstd_pct": 100.0 * tally.larger_than_zstd / pairs if pairs else float("nan"),
        "make_us_median": median(tally.make_us),
        "apply_us_median": median(tally.apply_us),
    }


def speed(leaves: int = 2000, runs: int = 200, repeat: int = 3) -> dict[str, float]:
    """Make and apply times (ms, p50 and p99) for a ``leaves``-leaf config with small edits.

    Two paths: plain trees (what ``edgecfg.make_delta``/``apply_delta`` get
    from a caller) and :class:`Encoded` configurations, which the gateway
    and the agent hold anyway (cached encodings for Block2, the device store).
    Every delta is made from and applied to one base, as a gateway makes
    many deltas from one version: the delta functions keep what they learnt
    about a base they met before (see ``edgecfg.wire.delta._Known``).  The
    base is met twice before the timed calls; the second meeting, which
    builds the base's tables, is timed alone (``second_meeting_ms``).  A
    second pass times each call on a base met for the first time (that
    cache emptied before it): ``cold_*``.  Then the chain (see :func:`_chain`).
    Baselines from the same run: one full canonical encode of the config
    (the yardstick: apply should cost less), and zstd-19 dictionary
    compression.

    The whole measurement runs ``repeat`` times, each from an emptied cache,
    and each call's figure is the least of its ``repeat`` times: on a shared
    machine a single run's tail measures the neighbours as much as the code
    (``*_single_ms_p99`` keeps the first run's apply tails for comparison).
    """
    config = generate_config(11, leaves=leaves, shape="mixed")
    edited = [mutate_config(config, seed, edits=1 + seed % 3) for seed in range(runs)]
    base = Encoded.of(config)
    targets = [Encoded.of(new) for new in edited]
    passes: list[dict[str, list[float]]] = []
    for _ in range(repeat):
        times = _one_base(config, edited, base, targets)
        times.update(_chain(config, runs))
        passes.append(times)
    best = {name: [min(column) for column in zip(*(p[name] for p in passes), strict=True)]
            for name in passes[0]}  # fmt: skip
    figures: dict[str, float] = {
        "leaves": leaves,
        "runs": runs,
        "repeat": repeat,
        "cbor_bytes": len(base.cbor),
        "second_meeting_ms": best.pop("second_meeting")[0],
    }
    for name, values in best.items():
        figures[f"{name}_ms_p50"] = median(values)
        figures[f"{name}_ms_p99"] = percentile(values, 0.99)
    for name in ("apply", "chain_apply"):
        figures[f"{name}_single_ms_p99"] = percentile(passes[0][name], 0.99)
    return figures


def _one_base(
    config: Tree, edited: Sequence[Tree], base: Encoded, targets: Sequence[Encoded]
) -> dict[str, list[float]]:
    """One pass of the one-base shape (see :func:`speed`): times in ms per call."""
    times: dict[str, list[float]] = {
        name: []
        for name in (
            "make",
            "apply",
            "make_plus_apply",
            "enc_make",
            "enc_apply",
            "encode",
            "zstd",
            "cold_make",
            "cold_apply",
            "cold_make_plus_apply",
            "apply_cpu",
            "make_plus_apply_cpu",
        )
    }
    # Meet the bases before timing: the first meeting is timed in its own
    # pass below, and the second, which builds the tables, is printed alone.
    forget_bases()
    gc.collect()
    warm_up = make_delta(config, edited[0])
    apply_delta_encoded(base, make_delta(base, targets[0]))
    t0 = time.perf_counter()
    make_delta(config, edited[0])
    apply_delta(config, warm_up)
    times["second_meeting"] = [(time.perf_counter() - t0) * 1000]
    make_delta(base, targets[0])
    for new, target in zip(edited, targets, strict=True):
        cpu_start = time.thread_time()
        t0 = time.perf_counter()
        delta = make_delta(config, new)
        t1 = time.perf_counter()
        cpu = time.thread_time()
        result = apply_delta(config, delta)
        cpu_end = time.thread_time()
        t2 = time.perf_counter()
        fast = make_delta(base, target)
        t3 = time.perf_counter()
        encoded_result = apply_delta_encoded(base, fast)
        t4 = time.perf_counter()
        if encode(result) != target.cbor or encoded_result.etag != target.etag:
            raise CommandError("speed run: the delta did not reproduce the edited config")
        times["make"].append((t1 - t0) * 1000)
        times["apply"].append((t2 - t1) * 1000)
        times["apply_cpu"].append((cpu_end - cpu) * 1000)
        times["make_plus_apply_cpu"].append((cpu_end - cpu_start) * 1000)
        times["make_plus_apply"].append((t2 - t0) * 1000)
        times["enc_make"].append((t3 - t2) * 1000)
        times["enc_apply"].append((t4 - t3) * 1000)
        _blob, encode_us = _timed(lambda: encode(config))
        _zstd, zstd_us = _timed(lambda n=new: zstd_dictionary(config, n))
        times["encode"].append(encode_us / 1000)
        times["zstd"].append(zstd_us / 1000)
    for new in edited:
        forget_bases()
        t0 = time.perf_counter()
        delta = make_delta(config, new)
        t1 = time.perf_counter()
        forget_bases()
        t2 = time.perf_counter()
        apply_delta(config, delta)
        t3 = time.perf_counter()
        times["cold_make"].append((t1 - t0) * 1000)
        times["cold_apply"].append((t3 - t2) * 1000)
        times["cold_make_plus_apply"].append((t1 - t0 + t3 - t2) * 1000)
    return times


def _chain(config: Tree, runs: int) -> dict[str, list[float]]:
    """Make and apply times (ms) along a history, as a gateway and a device meet it.

    Version N+1 is version N with 1-3 small edits.  The gateway makes each
    delta from the version before (the target of its previous delta); then,
    with what the gateway learnt forgotten, the device applies each delta to
    the result of its previous apply, a tree it holds and never met as a
    base before.  The device's copy of version 0 is decoded from bytes (its
    own objects).  The first two deltas are timed apart, as the one-base
    figures time the first and second meetings apart: the first meets
    version 0 for the first time (``chain_first_*``), the second builds
    the tables of the base it meets again (``chain_second_*``), which every
    later result inherits; the other ``runs`` are in the percentiles.
    Times are the thread's CPU time, and wall time for the device's apply.
    The device applies the chain twice: to plain trees, and to
    :class:`Encoded` configurations as the agent holds them
    (``chain_enc_apply``).
    """
    history = [config]
    for seed in range(runs + 2):
        history.append(mutate_config(history[-1], 1000 + seed, edits=1 + seed % 3))
    times: dict[str, list[float]] = {"chain_make": [], "chain_apply": [], "chain_apply_cpu": []}
    forget_bases()
    deltas: list[bytes] = []
    for old, new in itertools.pairwise(history):
        cpu = time.thread_time()
        deltas.append(make_delta(old, new))
        times["chain_make"].append((time.thread_time() - cpu) * 1000)
    # The device holds its configuration, not the gateway's history: the
    # versions are checked by their canonical bytes' digest.
    wanted = [etag(new) for new in history[1:]]
    first = encode(config)
    del history
    forget_bases()
    gc.collect()
    held = decode(first)
    for delta, tag in zip(deltas, wanted, strict=True):
        cpu = time.thread_time()
        t0 = time.perf_counter()
        held = apply_delta(held, delta)
        t1 = time.perf_counter()
        times["chain_apply_cpu"].append((time.thread_time() - cpu) * 1000)
        times["chain_apply"].append((t1 - t0) * 1000)
        if etag(held) != tag:
            raise CommandError("chain run: the delta did not reproduce the next version")
    # The agent's way: its configuration is an Encoded one, read from its store.
    del held
    forget_bases()
    gc.collect()
    stored = Encoded.from_bytes(first)
    times["chain_enc_apply"] = []
    for delta, tag in zip(deltas, wanted, strict=True):
        cpu = time.thread_time()
        stored = apply_delta_encoded(stored, delta)
        times["chain_enc_apply"].append((time.thread_time() - cpu) * 1000)
        if stored.etag != tag:
            raise CommandError("chain run: the delta did not reproduce the next version")
    times["chain_make_plus_apply_cpu"] = [
        made + applied
        for made, applied in zip(times["chain_make"], times["chain_apply_cpu"], strict=True)
    ]
    for name in list(times):
        times[name.replace("chain_", "chain_first_")] = times[name][:1]
        times[name.replace("chain_", "chain_second_")] = times[name][1:2]
        del times[name][:2]
    return times


def render(tallies: dict[str, dict[str, Tally]], unchanged: int) -> str:
    """The size table: per source, then overall."""
    lines = [
        f"{'source':<22} {'technique':<16} {'pairs':>5} {'median%':>8} {'p90%':>7} "
        f"{'p99%':>7} {'max%':>7} {'1-edit B':>8} {'>zstd%':>6} {'make us':>8} {'apply us':>8}"
    ]
    order = [*sorted(source for source in tallies if source != "all"), "all"]
    for source in order:
        for name in TECHNIQUES:
            f = summarize(tallies[source][name])
            above = f"{f['larger_than_zstd_pct']:.1f}" if name == "edgecfg" else "-"
            lines.append(
                f"{source:<22} {name:<16} {f['pairs']:>5.0f} {f['median_pct']:>8.2f} "
                f"{f['p90_pct']:>7.2f} {f['p99_pct']:>7.2f} {f['max_pct']:>7.1f} "
                f"{f['single_edit_median_bytes']:>8.1f} {above:>6} "
                f"{_blank(f['make_us_median']):>8} {_blank(f['apply_us_median']):>8}"
            )
    lines.append(f"unchanged pairs (sync answers 2.03, 0 delta bytes): {unchanged}")
    return "\n".join(lines)


def _blank(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"  # NaN: not measured


def verdicts(tallies: dict[str, dict[str, Tally]], timing: dict[str, float]) -> list[str]:
    """The issue's targets, each PASS or MISS with the figures behind it."""
    ours = summarize(tallies["all"]["edgecfg"])
    leaves = f"{timing['leaves']:.0f} leaves, plain trees"
    checks = [
        ("median <= 2.8%", ours["median_pct"] <= 2.8, f"{ours['median_pct']:.2f}%"),
        ("p90 <= 11.5%", ours["p90_pct"] <= 11.5, f"{ours['p90_pct']:.2f}%"),
        (
            "single-edit median <= 12 B",
            ours["single_edit_median_bytes"] <= 12,
            f"{ours['single_edit_median_bytes']:.1f} B",
        ),
        (
            "larger than zstd-19 dict on <= 5% of pairs",
            ours["larger_than_zstd_pct"] <= 5.0,
            f"{ours['larger_than_zstd_pct']:.1f}% of {ours['pairs']:.0f} pairs",
        ),
        (
            f"apply p99 <= 2 ms, {leaves} (CPU time)",
            timing["apply_cpu_ms_p99"] <= 2.0,
            f"{timing['apply_cpu_ms_p99']:.2f} ms (p50 {timing['apply_cpu_ms_p50']:.2f}; wall "
            f"p99 {timing['apply_ms_p99']:.2f}; one full encode {timing['encode_ms_p50']:.2f} "
            f"ms; a base met for the first time: p99 {timing['cold_apply_ms_p99']:.2f} ms, not "
            "a target)",
        ),
        (
            f"apply p99 <= 2 ms, {leaves}, a chain (each delta applied to the last result; "
            "CPU time)",
            timing["chain_apply_cpu_ms_p99"] <= 2.0,
            f"{timing['chain_apply_cpu_ms_p99']:.2f} ms (p50 "
            f"{timing['chain_apply_cpu_ms_p50']:.2f}; wall p99 "
            f"{timing['chain_apply_ms_p99']:.2f}; the chain's first two applies, first and "
            f"second meeting: {timing['chain_first_apply_ms_p50']:.2f} and "
            f"{timing['chain_second_apply_ms_p50']:.2f} ms, not a target)",
        ),
        (
            f"make+apply p50 <= 5 ms, {leaves}, a chain",
            timing["chain_make_plus_apply_cpu_ms_p50"] <= 5.0,
            f"{timing['chain_make_plus_apply_cpu_ms_p50']:.2f} ms CPU time (p99 "
            f"{timing['chain_make_plus_apply_cpu_ms_p99']:.2f})",
        ),
        (
            f"make+apply p50 <= 5 ms, {leaves}",
            timing["make_plus_apply_ms_p50"] <= 5.0,
            f"{timing['make_plus_apply_ms_p50']:.2f} ms (p99 "
            f"{timing['make_plus_apply_ms_p99']:.2f}; one full encode "
            f"{timing['encode_ms_p50']:.2f} ms; a base met for the first time: p50 "
            f"{timing['cold_make_plus_apply_ms_p50']:.2f} ms, not a target)",
        ),
    ]
    return [f"{'PASS' if ok else 'MISS'}  {name}: {figure}" for name, ok, figure in checks]


def run_delta_bench(
    files: Sequence[str],
    *,
    as_json: bool,
    leaves: int,
    synthetic: bool = False,
    worst_count: int = 0,
    runs: int = 200,
    repeat: int = 3,
) -> int:
    """Entry point of ``edgecfg bench delta``; returns the exit code (1: a pair failed)."""
    paths = corpus_files(files)
    if not paths and not synthetic and DEFAULT_CORPUS.is_dir():
        paths = sorted(DEFAULT_CORPUS.glob("*.jsonl"))
    if paths:  # checked first: a malformed corpus is refused before a minute of timing
        check_corpus(paths)
    # Timed in a heap without the corpus's trees (a device holds one
    # configuration): the collector's full passes then walk what a device's would.
    gc.collect()
    timing = speed(leaves, runs, repeat)
    if paths:
        pairs, unchanged = load_pairs(paths)
        origin = ", ".join(str(path) for path in paths)
    else:
        pairs, unchanged = synthetic_pairs()
        origin = "the synthetic generator" + ("" if synthetic else " (no corpus found)")
    if not pairs:
        raise CommandError(f"no changed pairs in {origin}")
    tallies, outcomes = measure(pairs)
    failures = [outcome for outcome in outcomes if outcome.error]
    if as_json:
        document = {
            "origin": origin,
            "definition": CHANGED_PAIR,
            "changed_pairs": len(pairs),
            "unchanged_pairs": unchanged,
            "round_trip_failures": [
                {"pair": f.pair.where or f.pair.source, "kind": f.kind, "error": f.error}
                for f in failures
            ],
            "sizes": {
                source: {name: summarize(tally) for name, tally in row.items()}
                for source, row in tallies.items()
            },
            "speed": timing,
            "verdicts": verdicts(tallies, timing) if "all" in tallies else [],
        }
        print(json.dumps(document, indent=2))
        return 1 if failures else 0
    print(f"{len(pairs)} changed pairs ({CHANGED_PAIR}) from {origin}")
    if "all" in tallies:
        print("delta sizes as % of the new version's canonical CBOR; p99 beside p50/p90;")
        print(">zstd%: share of pairs where the edgecfg delta is larger than zstd-19 dict")
        print(render(tallies, unchanged))
    if worst_count:
        print()
        print("\n".join(worst(outcomes, worst_count)))
    print()
    print(
        f"speed, {timing['leaves']:.0f}-leaf config ({timing['cbor_bytes']:.0f} B CBOR), "
        f"{timing['runs']:.0f} small edits (1-3 leaves), ms p50 / p99, each call's least "
        f"time over {timing['repeat']:.0f} runs (a single run's apply p99: one base "
        f"{timing['apply_single_ms_p99']:.2f}, chain {timing['chain_apply_single_ms_p99']:.2f}):\n"
        f"  plain trees, one base: make {_pp(timing, 'make')}, apply {_pp(timing, 'apply')}, "
        f"make+apply {_pp(timing, 'make_plus_apply')}\n"
        f"    the same in CPU time (this thread's, not counting time other processes took): "
        f"apply {_pp(timing, 'apply_cpu')}, make+apply {_pp(timing, 'make_plus_apply_cpu')}\n"
        f"  plain trees, base met for the first time: make {_pp(timing, 'cold_make')}, "
        f"apply {_pp(timing, 'cold_apply')}, make+apply {_pp(timing, 'cold_make_plus_apply')}; "
        f"the second meeting (make+apply, building the base's tables, once, not in the "
        f"figures above): {timing['second_meeting_ms']:.2f}\n"
        f"  plain trees, a chain (version N+1 = version N with 1-3 edits; the gateway makes "
        f"each delta from the version before, the device applies it to its last result): "
        f"make (CPU) {_pp(timing, 'chain_make')}, apply {_pp(timing, 'chain_apply')}, "
        f"apply CPU {_pp(timing, 'chain_apply_cpu')}, Encoded apply CPU "
        f"{_pp(timing, 'chain_enc_apply')}, make+apply CPU "
        f"{_pp(timing, 'chain_make_plus_apply_cpu')}; not in these, the chain's first delta "
        f"(its base met for the first time): apply {timing['chain_first_apply_ms_p50']:.2f}, "
        f"make {timing['chain_first_make_ms_p50']:.2f}, and the second (the device builds the "
        f"tables its later results inherit): apply {timing['chain_second_apply_ms_p50']:.2f}\n"
        f"  Encoded configs, one base: make {_pp(timing, 'enc_make')}, "
        f"apply {_pp(timing, 'enc_apply')}\n"
        f"  same-run yardsticks: one full canonical encode {_pp(timing, 'encode')}, "
        f"zstd-19 dict compress {_pp(timing, 'zstd')}"
    )
    if "all" in tallies:
        print()
        print("\n".join(verdicts(tallies, timing)))
    if failures:
        print()
        print(f"FAIL  {len(failures)} of {len(pairs)} changed pairs do not round-trip:")
        for failure in failures:
            pair = failure.pair
            print(f"  {pair.where or pair.source}: {failure.kind} delta: {failure.error}")
        return 1
    print(f"PASS  all {len(pairs)} changed pairs round-trip")
    return 0


def _pp(timing: dict[str, float], name: str) -> str:
    return f"{timing[name + '_ms_p50']:.2f} / {timing[name + '_ms_p99']:.2f}"
