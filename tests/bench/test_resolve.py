"""``edgecfg bench resolve``: a tiny fleet end to end, the built-in correctness
checks, and the independent reference fold the checks rely on."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace

import pytest

from edgecfg.bench import resolve as bench_resolve
from edgecfg.bench.resolve import Shape, group_tree, populate, reference_tree
from edgecfg.cli.main import main
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Hierarchy, Layer
from edgecfg.core.resolve import DeviceFacts, Resolution, Resolver, Tiers
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import Tree, flatten
from edgecfg.fleet.fleet import Fleet
from edgecfg.wire.cbor import encode

TINY = ("--devices", "300", "--leaves", "200", "--groups", "30")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bench", "resolve", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_resolve_prints_the_table_and_one_verdict_per_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, *TINY)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("fleet: 300 devices, 200-leaf schema, 30 group nodes")
    rows = {
        "single device, cold p50 / p99 (ms)": 4,
        "single device, warm p50 / p99 (ms)": 4,
        "full fleet from cold (s)": 2,
        "root-edit impact (s)": 2,
        "peak RSS, whole run (MiB)": 1,
    }
    for label, count in rows.items():
        row = next(line for line in lines if line.startswith(label))
        figures = [float(n) for n in NUMBER.findall(row[len(label) :])]
        assert len(figures) == count, row
        # on a tiny fleet a warm answer or an impact query may round to zero
        assert all(figure >= 0 for figure in figures), row
        assert any(figure > 0 for figure in figures), row
    verdicts = [line for line in lines if line.startswith(("PASS  ", "MISS  "))]
    assert [v.split(":")[0][6:] for v in verdicts] == [
        "warm resolution p99 <= 0.25 ms",
        "full fleet from cold <= 10 s",
        "root-edit impact <= 2 s",
        "peak RSS <= 1 GiB",
    ]
    assert any(line.startswith("* extrapolated: mean of 300 sampled") for line in lines)


def test_bench_resolve_json_is_a_document_with_positive_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *TINY, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["shape"] == {"devices": 300, "leaves": 200, "groups": 30, "seed": 7}
    for side in ("ours", "naive"):
        assert set(document[side]) == {
            "cold_p50_ms", "cold_p99_ms", "warm_p50_ms", "warm_p99_ms", "fleet_s", "impact_s"
        }  # fmt: skip
        assert all(value > 0 for value in document[side].values())
    assert document["ours"]["warm_p50_ms"] < document["ours"]["cold_p50_ms"]
    assert 0 < document["signatures"] <= 300
    assert document["memoised_folds"] >= document["signatures"] - document["device_layers"]
    assert document["reached"] == 300
    assert document["peak_rss_mib"] > 0
    assert len(document["verdicts"]) == 4
    assert document["naive_extrapolated"] == ["fleet_s", "impact_s"]


def test_the_correctness_check_covers_every_sampled_device(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *TINY, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["naive_samples"] == 300  # the whole tiny fleet
    assert document["reference_samples"] == bench_resolve.REFERENCE_SAMPLES
    assert document["naive_changed"] == document["changed"]


def test_a_fleet_that_disagrees_with_the_reference_fold_fails_the_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrong(*_: object) -> Tree:
        return {"sec0": {"sub0": {"opt0": "not what the fleet says"}}}

    monkeypatch.setattr(bench_resolve, "reference_tree", wrong)
    code, out, err = run(capsys, *TINY)
    assert code == 1
    assert out == ""
    assert "differs from the leaf-by-leaf reference fold" in err


def test_a_fleet_that_disagrees_with_the_naive_fold_fails_the_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Skewed(Resolver):
        def resolve(self, device: DeviceFacts, *, tiers: Tiers | None = None) -> Resolution:
            resolution = super().resolve(device, tiers=tiers)
            return replace(resolution, tree={**resolution.tree, "extra": 1})

    monkeypatch.setattr(bench_resolve, "Resolver", Skewed)
    code, _, err = run(capsys, *TINY)
    assert code == 1
    assert "differs from a naive fold" in err


def test_too_small_a_fleet_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--leaves", "10")
    assert code == 1
    assert out == ""
    assert "--leaves >= 100" in err


def test_one_seed_names_one_fleet() -> None:
    shape = Shape(devices=50, leaves=120, groups=20, seed=3)
    first, second = populate(shape), populate(shape)
    assert list(first.store.iter_devices()) == list(second.store.iter_devices())
    assert first.store.layer_ids() == second.store.layer_ids()
    for layer_id in first.store.layer_ids():
        assert first.store.get_layer(layer_id).content == second.store.get_layer(layer_id).content
    assert first.groups == second.groups == group_tree(random.Random(0), 20).count


@pytest.mark.parametrize("groups", [10, 30, 200, 400])
def test_group_tree_has_about_the_asked_number_of_nodes(groups: int) -> None:
    tree = group_tree(random.Random(1), groups)
    assert groups <= tree.count <= max(groups, 13)
    assert all(site.count("/") == 2 for site in tree.sites)
    assert set(tree.hardware) <= set(tree.hardware_nodes)


def test_reference_fold_agrees_with_the_resolver_on_locks_tombstones_and_drops() -> None:
    schema = schema_from_document(
        {
            "name": "t",
            "version": 1,
            "keys": {
                "a.x": {"id": 1, "type": "int", "default": 1},
                "a.y": {"id": 2, "type": "int", "default": 2},
                "b.z": {"id": 3, "type": "int", "default": 3, "hardware": ["m1"]},
                "c": {"id": 4, "type": "bool", "default": False},
            },
        }
    )
    low = Layer({("a", "x"): 10, ("c",): True}, locks=frozenset({("a", "x")}))
    high = Layer({("a", "x"): 99, ("a", "y"): 20}, unsets=frozenset({("c",)}))
    layers = {LayerId("global"): low, LayerId("function/f"): high}
    for hardware in ("m1", "m2"):
        facts = DeviceFacts(DeviceId("d"), {"function": "f"}, hardware)
        resolver = Resolver(Hierarchy(), layers, schema)
        expected = resolver.resolve(facts).tree
        got = reference_tree(schema, flatten(schema.defaults()), [low, high], facts)
        assert encode(got) == encode(expected)
    assert got == {"a": {"x": 10, "y": 20}}


def test_forget_folds_leaves_the_resolver_cold() -> None:
    shape = Shape(devices=20, leaves=100, groups=10, seed=1)
    fleet = Fleet(populate(shape).store)
    for device in fleet.members().facts:
        fleet.resolver.resolve(fleet.device(device))
    assert fleet.resolver.cached_folds() > 0
    bench_resolve.forget_folds(fleet.resolver)
    assert fleet.resolver.cached_folds() == 0
