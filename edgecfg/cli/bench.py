"""``edgecfg bench ...``: measurements printed next to baselines from the same run.

``bench delta`` replays configuration histories (JSON lines in the format of
``../shared/corpus``: ``{"repo", "path", "tree", ...}`` per version, oldest
first per ``(repo, path)``), makes and applies a delta for every consecutive
changed pair, fails loudly when a result differs from the new version, and
prints size and speed for edgecfg and for the baselines of
:mod:`edgecfg.wire.baselines`.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecfg.cli.files import CommandError
from edgecfg.core.tree import Tree, check_model, flatten, is_map, values_equal
from edgecfg.errors import EdgecfgError
from edgecfg.sim.configs import Shape, generate_config, generate_history, mutate_config
from edgecfg.wire.baselines import full_lz4, json_patch_cbor, zstd_dictionary
from edgecfg.wire.cbor import Encoded, encode
from edgecfg.wire.delta import apply_delta, apply_delta_encoded, delta_kind, make_delta

DEFAULT_CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
TECHNIQUES = ("edgecfg", "zstd-19 dict", "JSON Patch CBOR", "full lz4")


@dataclass(frozen=True, slots=True)
class Pair:
    source: str
    old: Tree
    new: Tree
    single_edit: bool


@dataclass(slots=True)
class Tally:
    """Sizes (bytes and % of the new canonical CBOR) of one technique on one source."""

    percents: list[float] = field(default_factory=lambda: [])
    single_bytes: list[int] = field(default_factory=lambda: [])
    make_us: list[float] = field(default_factory=lambda: [])
    apply_us: list[float] = field(default_factory=lambda: [])

    def add(self, size: int, target_size: int, single: bool) -> None:
        self.percents.append(100.0 * size / target_size)
        if single:
            self.single_bytes.append(size)


def load_pairs(files: Sequence[Path]) -> tuple[list[Pair], int]:
    """Consecutive changed pairs from corpus files, and the count of unchanged pairs."""
    pairs: list[Pair] = []
    unchanged = 0
    for file in files:
        previous: dict[tuple[str, str], Tree] = {}
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise CommandError(f"{file}: cannot read: {error.strerror}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (str(record["repo"]), str(record["path"]))
                tree = check_model(record["tree"])
            except (ValueError, KeyError, TypeError, EdgecfgError) as error:
                raise CommandError(f"{file}:{number}: not a corpus record: {error}") from None
            if not is_map(tree):
                raise CommandError(f"{file}:{number}: 'tree' must be a map")
            old = previous.get(key)
            previous[key] = tree
            if old is None:
                continue
            if values_equal(old, tree):
                unchanged += 1
            else:
                pairs.append(Pair(file.stem, old, tree, _single_edit(old, tree)))
    return pairs, unchanged


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


def _single_edit(old: Tree, new: Tree) -> bool:
    """Exactly one leaf value replaced, nothing added or removed."""
    a, b = flatten(old), flatten(new)
    if a.keys() != b.keys():
        return False
    return sum(1 for path in a if not values_equal(a[path], b[path])) == 1


def _timed(function: Callable[[], bytes | Tree]) -> tuple[bytes | Tree, float]:
    start = time.perf_counter()
    result = function()
    return result, (time.perf_counter() - start) * 1e6


def measure(pairs: Iterable[Pair]) -> dict[str, dict[str, Tally]]:
    """Tallies per source and technique (``"all"`` aggregates); raises on a wrong result."""
    tallies: dict[str, dict[str, Tally]] = {}
    for pair in pairs:
        target_size = len(encode(pair.new))
        delta, make_us = _timed(lambda p=pair: make_delta(p.old, p.new))
        assert isinstance(delta, bytes)
        result, apply_us = _timed(lambda p=pair, d=delta: apply_delta(p.old, d))
        if encode(result) != encode(pair.new):  # type: ignore[arg-type]
            raise CommandError(
                f"{pair.source}: delta ({delta_kind(delta)}, {len(delta)} bytes) did not "
                "reproduce the new version"
            )
        zstd, zstd_us = _timed(lambda p=pair: zstd_dictionary(p.old, p.new))
        sizes = {
            "edgecfg": (len(delta), make_us, apply_us),
            "zstd-19 dict": (len(zstd), zstd_us, 0.0),  # type: ignore[arg-type]
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
    return tallies


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[round(fraction * (len(ordered) - 1))] if ordered else float("nan")


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(tally: Tally) -> dict[str, float]:
    """The figures printed for one tally."""
    return {
        "pairs": len(tally.percents),
        "median_pct": _median(tally.percents),
        "p90_pct": _percentile(tally.percents, 0.9),
        "max_pct": max(tally.percents, default=float("nan")),
        "single_edits": len(tally.single_bytes),
        "single_edit_median_bytes": _median([float(v) for v in tally.single_bytes]),
        "make_us_median": _median(tally.make_us),
        "apply_us_median": _median(tally.apply_us),
    }


def speed(leaves: int = 2000, runs: int = 30) -> dict[str, float]:
    """Median make and apply time (ms) for a ``leaves``-leaf config with small edits.

    Two paths: plain trees (every call encodes and hashes both sides) and
    :class:`Encoded` configurations, which the gateway and the agent hold
    anyway (cached encodings for Block2, the device store).  Baselines from
    the same run: one canonical encode, and zstd-19 dictionary compression.
    """
    config = generate_config(11, leaves=leaves, shape="mixed")
    edited = [mutate_config(config, seed, edits=1 + seed % 3) for seed in range(runs)]
    base = Encoded.of(config)
    targets = [Encoded.of(new) for new in edited]
    plain_ms: list[float] = []
    fast_make: list[float] = []
    fast_total: list[float] = []
    encode_ms: list[float] = []
    zstd_ms: list[float] = []
    for new, target in zip(edited, targets, strict=True):
        start = time.perf_counter()
        apply_delta(config, make_delta(config, new))
        middle = time.perf_counter()
        delta = make_delta(base, target)
        made = time.perf_counter()
        result = apply_delta_encoded(base, delta)
        end = time.perf_counter()
        if result.etag != target.etag:
            raise CommandError("speed run: the delta did not reproduce the edited config")
        plain_ms.append((middle - start) * 1000)
        fast_make.append((made - middle) * 1000)
        fast_total.append((end - middle) * 1000)
        _blob, encoded_us = _timed(lambda: encode(config))
        _zstd, zstd_us = _timed(lambda n=new: zstd_dictionary(config, n))
        encode_ms.append(encoded_us / 1000)
        zstd_ms.append(zstd_us / 1000)
    return {
        "leaves": leaves,
        "cbor_bytes": len(base.cbor),
        "make_ms": _median(fast_make),
        "apply_ms": _median([t - m for t, m in zip(fast_total, fast_make, strict=True)]),
        "make_plus_apply_ms": _median(fast_total),
        "plain_trees_make_plus_apply_ms": _median(plain_ms),
        "baseline_encode_ms": _median(encode_ms),
        "baseline_zstd19_dict_ms": _median(zstd_ms),
    }


def render(tallies: dict[str, dict[str, Tally]], unchanged: int) -> str:
    """The size table: per source, then overall."""
    lines = [
        f"{'source':<22} {'technique':<16} {'pairs':>5} {'median%':>8} {'p90%':>7} "
        f"{'max%':>7} {'1-edit B':>8} {'make us':>8} {'apply us':>8}"
    ]
    order = [*sorted(source for source in tallies if source != "all"), "all"]
    for source in order:
        for name in TECHNIQUES:
            f = summarize(tallies[source][name])
            lines.append(
                f"{source:<22} {name:<16} {f['pairs']:>5.0f} {f['median_pct']:>8.2f} "
                f"{f['p90_pct']:>7.2f} {f['max_pct']:>7.1f} {f['single_edit_median_bytes']:>8.1f} "
                f"{_blank(f['make_us_median']):>8} {_blank(f['apply_us_median']):>8}"
            )
    lines.append(f"unchanged pairs (sync answers 2.03, 0 delta bytes): {unchanged}")
    return "\n".join(lines)


def _blank(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"  # NaN: not measured


def verdicts(tallies: dict[str, dict[str, Tally]], timing: dict[str, float]) -> list[str]:
    """The issue's targets, each PASS or MISS with the figures behind it."""
    ours = summarize(tallies["all"]["edgecfg"])
    zstd = summarize(tallies["all"]["zstd-19 dict"])
    checks = [
        ("median <= 3.0%", ours["median_pct"] <= 3.0, f"{ours['median_pct']:.2f}%"),
        ("p90 <= 12%", ours["p90_pct"] <= 12.0, f"{ours['p90_pct']:.2f}%"),
        (
            "single-edit median <= 20 B",
            ours["single_edit_median_bytes"] <= 20,
            f"{ours['single_edit_median_bytes']:.1f} B",
        ),
        (
            "below zstd-19 dict at median",
            ours["median_pct"] < zstd["median_pct"],
            f"{ours['median_pct']:.2f}% vs {zstd['median_pct']:.2f}%",
        ),
        (
            "below zstd-19 dict at p90",
            ours["p90_pct"] < zstd["p90_pct"],
            f"{ours['p90_pct']:.2f}% vs {zstd['p90_pct']:.2f}%",
        ),
        (
            "below zstd-19 dict for single edits",
            ours["single_edit_median_bytes"] < zstd["single_edit_median_bytes"],
            f"{ours['single_edit_median_bytes']:.1f} B vs {zstd['single_edit_median_bytes']:.1f} B",
        ),
        (
            f"make+apply, {timing['leaves']:.0f} leaves, encoded configs, < 5 ms",
            timing["make_plus_apply_ms"] < 5.0,
            f"{timing['make_plus_apply_ms']:.2f} ms",
        ),
        (
            f"make+apply, {timing['leaves']:.0f} leaves, plain trees, < 5 ms",
            timing["plain_trees_make_plus_apply_ms"] < 5.0,
            f"{timing['plain_trees_make_plus_apply_ms']:.2f} ms",
        ),
    ]
    return [f"{'PASS' if ok else 'MISS'}  {name}: {figure}" for name, ok, figure in checks]


def run_delta_bench(
    files: Sequence[str], *, as_json: bool, leaves: int, synthetic: bool = False
) -> int:
    """Entry point of ``edgecfg bench delta``; returns the exit code."""
    paths = [Path(name) for name in files]
    if not paths and not synthetic and DEFAULT_CORPUS.is_dir():
        paths = sorted(DEFAULT_CORPUS.glob("*.jsonl"))
    if paths:
        pairs, unchanged = load_pairs(paths)
        origin = ", ".join(str(path) for path in paths)
    else:
        pairs, unchanged = synthetic_pairs()
        origin = "the synthetic generator" + ("" if synthetic else " (no corpus found)")
    if not pairs:
        raise CommandError(f"no changed pairs in {origin}")
    tallies = measure(pairs)
    timing = speed(leaves)
    if as_json:
        document = {
            "origin": origin,
            "unchanged_pairs": unchanged,
            "sizes": {
                source: {name: summarize(tally) for name, tally in row.items()}
                for source, row in tallies.items()
            },
            "speed": timing,
            "verdicts": verdicts(tallies, timing),
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"delta sizes as % of the new version's canonical CBOR; pairs from {origin}")
    print(render(tallies, unchanged))
    print()
    print(
        f"speed, {timing['leaves']:.0f}-leaf config ({timing['cbor_bytes']:.0f} B CBOR), "
        f"median of {30} small edits:\n"
        f"  encoded configs (gateway/agent path): make {timing['make_ms']:.2f} ms, "
        f"apply {timing['apply_ms']:.2f} ms\n"
        f"  plain trees (encode + hash both sides every call): make+apply "
        f"{timing['plain_trees_make_plus_apply_ms']:.2f} ms\n"
        f"  same-run baselines: one canonical encode {timing['baseline_encode_ms']:.2f} ms, "
        f"zstd-19 dict compress {timing['baseline_zstd19_dict_ms']:.2f} ms"
    )
    print()
    print("\n".join(verdicts(tallies, timing)))
    return 0
