"""``edgecfg bench resolve``: effective configurations of a synthetic fleet,
measured next to naive recomputation in the same run.

**The fleet** (one ``--seed`` names one fleet):

- a schema of ``--leaves`` keys ``sec{i}.sub{j}.opt{k}`` of mixed types (int
  and float with bounds, bool, text with an enum, int arrays), every key with
  a default; a few keys apply only to some hardware models (so resolution
  drops them on the others) and a few are ``critical``;
- about ``--groups`` group nodes: hardware ``model/revision``, function, and
  region ``region/sub-region/site``.  Every device is in one group per
  dimension, drawn uniformly and independently (the worst case for shared
  work), at a site or, one in ten, directly at a sub-region; its stack is
  global + 2 hardware + 1 function + 2-3 region layers, plus its own layer
  for 1% of devices (1-5 overrides);
- group layers set 5-40 valid values, the global layer sets ~50 and locks 3;
  no layer above changes a locked path (a real fleet refuses such writes).

**How it is stored.**  The schema goes in with ``Fleet.load_schema`` and the
global and group layers with ``Fleet.write_layer``, so every write-time check
runs; no device is registered yet, so each edit's impact is empty and cheap.
Devices go in with one ``Store.put_devices``.  Device layers are appended to
the store as revisions directly: through ``write_layer`` each one costs a
dry run whose candidate list rebuilds the schema defaults and every layer's
leaves (``Fleet._known_leaves``): ~6 ms each at 2,000 leaves (measured), so
~6 s for 1,000 device layers, and storing is not what this bench measures.  Every
measured fleet is a new :class:`Fleet` over that store, as after a restart.

**Measurements** (``time.perf_counter``; memory: peak RSS of the process):

1. *cold*: ``Fleet.encoded`` (fold, drops, canonical encoding, ETag) of up to
   2,000 devices with distinct signatures; before each, re-putting the
   unchanged global layer makes the resolver forget every fold (they all
   contain it), so nothing of the device's stack is memoised.  The per-model
   list of unsupported keys stays memoised, as in any running gateway.
2. *warm*: the same devices again (cached encodings).
3. *full fleet from cold*: a new ``Fleet``: load, ``members()``, ``encoded``
   for every device; then, to show where the time goes, the canonical
   encoding alone of up to 2,000 of those configurations.
4. *root-layer edit*: ``Fleet.impact`` of an edit of 1-3 global values.
5. *naive*: the same fold with nothing shared (the resolver forgets every
   fold before each device), plus encoding, on a sample of devices; its fleet
   and impact figures are the sample's mean times the device counts:
   **extrapolated**, not measured over the fleet.

Before reporting, the fleet's encoding of every naive sample must equal the
naive one and, for a subset, an independent leaf-by-leaf fold
(:func:`reference_tree`); any difference raises :class:`CommandError`.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Final

from edgecfg.bench.measure import peak_rss_mib, percentile
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import GLOBAL, Layer, device_layer, group_layer, layer_to_document
from edgecfg.core.path import Path, format_path, is_prefix
from edgecfg.core.resolve import DeviceFacts, Resolver, Tiers
from edgecfg.core.schema import KeySpec, Schema
from edgecfg.core.tree import UNSET, Tree, Value, flatten, unflatten, values_equal
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.cbor import Encoded, encode

COLD_SAMPLES: Final = 2000
NAIVE_SAMPLES: Final = 500
REFERENCE_SAMPLES: Final = 200
TARGET_WARM_P99_MS: Final = 0.25
TARGET_FLEET_S: Final = 10.0
TARGET_IMPACT_S: Final = 2.0
TARGET_RSS_MIB: Final = 1024.0

_MODELS: Final = ("gw100", "gw200", "sx10", "sx20")
_FUNCTIONS: Final = (
    "meter", "camera", "hvac", "lighting", "access",
    "pump", "charger", "weather", "tracker", "relay",
)  # fmt: skip
_REGIONS: Final = ("eu", "us", "apac", "latam")
_WORDS: Final = ("off", "low", "mid", "high", "auto", "eco", "boost", "safe", "night", "burst")
_KINDS: Final = ("int", "int", "float", "bool", "str", "array")


# ---------------------------------------------------------------- the synthetic fleet


@dataclass(frozen=True, slots=True)
class Shape:
    """What the command line asked for."""

    devices: int
    leaves: int
    groups: int
    seed: int


@dataclass(slots=True)
class Population:
    """A populated store and what the bench needs to know about it."""

    store: MemoryStore
    groups: int  # group nodes, each with a layer
    device_layers: int
    setup_s: float


def schema_document(rng: random.Random, leaves: int) -> dict[str, object]:
    """A schema document of ``leaves`` keys ``sec{i}.sub{j}.opt{k}``, all with defaults."""
    hardware_keys = set(rng.sample(range(leaves), max(3, leaves // 200)))
    critical_keys = set(rng.sample(range(leaves), max(3, leaves // 400)))
    keys: dict[str, object] = {}
    for n in range(leaves):
        key = _key_document(rng, n + 1)
        if n in hardware_keys:
            key["hardware"] = sorted(rng.sample(_MODELS[:2], 1) + rng.sample(_MODELS[2:], 1))
        if n in critical_keys:
            key["priority"] = "critical"
        keys[f"sec{n // 100}.sub{n // 10 % 10}.opt{n % 10}"] = key
    return {"name": "bench-resolve", "version": 1, "keys": keys}


def _key_document(rng: random.Random, key_id: int) -> dict[str, object]:
    kind = rng.choice(_KINDS)
    if kind == "int":
        low = rng.randrange(0, 100)
        high = low + rng.randrange(10, 10_000)
        return {"id": key_id, "type": kind, "min": low, "max": high,
                "default": rng.randint(low, high)}  # fmt: skip
    if kind == "float":
        high = rng.choice((1.0, 100.0, 10_000.0))
        return {"id": key_id, "type": kind, "min": 0.0, "max": high,
                "default": round(rng.uniform(0.0, high), 3)}  # fmt: skip
    if kind == "bool":
        return {"id": key_id, "type": kind, "default": rng.random() < 0.5}
    if kind == "str":
        words = rng.sample(_WORDS, rng.randint(3, 6))
        return {"id": key_id, "type": kind, "enum": words, "default": words[0]}
    default = [rng.randrange(100) for _ in range(rng.randrange(4))]
    return {"id": key_id, "type": "array", "items": "int", "max": 8, "default": default}


def random_value(rng: random.Random, spec: KeySpec) -> Value:
    """A value of ``spec`` that its rules accept."""
    if spec.enum is not None:
        return rng.choice(spec.enum)
    if spec.type == "int":
        return rng.randint(int(spec.min or 0), int(spec.max or 1000))
    if spec.type == "float":
        return round(rng.uniform(float(spec.min or 0.0), float(spec.max or 1.0)), 3)
    if spec.type == "bool":
        return rng.random() < 0.5
    return [rng.randrange(100) for _ in range(rng.randrange(int(spec.max or 4) + 1))]


@dataclass(frozen=True, slots=True)
class GroupTree:
    """The group nodes of each dimension, and those devices join."""

    hardware_nodes: list[str]  # models and model/revision
    hardware: list[str]  # model/revision: devices join these
    functions: list[str]
    region_nodes: list[str]  # regions, sub-regions and sites
    sites: list[str]  # region/sub-region/site: nine devices in ten join these
    sub_regions: list[str]  # region/sub-region: the tenth joins these

    @property
    def count(self) -> int:
        return len(self.hardware_nodes) + len(self.functions) + len(self.region_nodes)


def group_tree(rng: random.Random, groups: int) -> GroupTree:
    """About ``groups`` group nodes in all, ancestors included (~200: 4 models x 2
    revisions, 10 functions, 4 regions > 10 sub-regions > 164 sites)."""
    models = _MODELS[: 4 if groups >= 100 else 2]
    functions = _FUNCTIONS[: max(2, min(10, groups // 20))]
    regions = _REGIONS[: max(1, min(4, groups // 50))]
    subs = [
        f"{regions[n % len(regions)]}/{regions[n % len(regions)]}-{n // len(regions) + 1}"
        for n in range(max(len(regions), min(10, groups // 20)))
    ]
    fixed = 3 * len(models) + len(functions) + len(regions) + len(subs)
    sites = [
        f"{subs[n % len(subs)]}/site-{n + 1:03d}" for n in range(max(len(subs), groups - fixed))
    ]
    rng.shuffle(sites)
    hardware = [f"{model}/r{rev}" for model in models for rev in (1, 2)]
    return GroupTree(
        [*models, *hardware], hardware, list(functions), [*regions, *subs, *sites], sites, subs
    )


def populate(shape: Shape) -> Population:
    """A :class:`MemoryStore` holding the fleet described by ``shape``."""
    start = time.perf_counter()
    rng = random.Random(shape.seed)
    store = MemoryStore()
    fleet = Fleet(store)
    document = json.dumps(schema_document(rng, shape.leaves)).encode()
    schema = fleet.load_schema(document, "json", source="bench-resolve.json", now=0.0)
    specs = sorted(schema, key=lambda spec: spec.path)
    nodes = group_tree(rng, shape.groups)

    root_paths = rng.sample(specs, min(50, len(specs) // 4))
    locked = frozenset(spec.path for spec in rng.sample(root_paths, 3))
    root = Layer({s.path: random_value(rng, s) for s in root_paths}, locks=locked)
    free = [spec for spec in specs if spec.path not in locked]
    layers: list[tuple[LayerId, Layer]] = [(GLOBAL, root)]
    for dimension, names in (
        ("hardware", nodes.hardware_nodes),
        ("function", nodes.functions),
        ("region", nodes.region_nodes),
    ):
        for name in names:
            chosen = rng.sample(free, min(len(free), rng.randint(5, 40)))
            layer = Layer({s.path: random_value(rng, s) for s in chosen})
            layers.append((group_layer(dimension, name), layer))
    for layer_id, layer in layers:
        fleet.write_layer(layer_id, layer, author="bench", message="seed", now=1.0, replace=True)

    records: list[DeviceRecord] = []
    for n in range(shape.devices):
        hardware = rng.choice(nodes.hardware)
        region = rng.choice(nodes.sites if rng.random() >= 0.1 else nodes.sub_regions)
        groups = {"hardware": hardware, "function": rng.choice(nodes.functions), "region": region}
        records.append(DeviceRecord(DeviceId(f"dev-{n:06d}"), groups, hardware.split("/")[0]))
    store.put_devices(records)
    owners = rng.sample(records, max(1, shape.devices // 100))
    for record in owners:
        chosen = rng.sample(free, rng.randint(1, 5))
        layer = Layer({s.path: random_value(rng, s) for s in chosen})
        blob = store.put_blob(encode(layer_to_document(layer)))
        store.append_layer_revision(
            device_layer(record.id), blob, parent=None, author="bench", message="seed", now=2.0
        )
    return Population(store, nodes.count, len(owners), time.perf_counter() - start)


def root_edit(rng: random.Random, fleet: Fleet) -> tuple[Layer, list[Path]]:
    """The global layer with 1-3 of its values changed (to other valid values)."""
    assert fleet.schema is not None
    root = fleet.resolver.layer(GLOBAL)
    paths = rng.sample(sorted(root.sets), rng.randint(1, min(3, len(root.sets))))
    sets = dict(root.sets)
    for path in paths:
        spec = fleet.schema.spec(path)
        assert spec is not None
        while values_equal(sets[path], root.sets[path]):
            sets[path] = random_value(rng, spec)
    return Layer(sets, root.unsets, root.locks), paths


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class Side:
    """One technique's figures: milliseconds per device, seconds per fleet."""

    cold_p50_ms: float
    cold_p99_ms: float
    warm_p50_ms: float
    warm_p99_ms: float
    fleet_s: float
    impact_s: float


def forget_folds(resolver: Resolver) -> None:
    """Make ``resolver`` forget every memoised fold: all of them contain the
    global layer, and putting a layer forgets the folds that used it."""
    resolver.put_layer(GLOBAL, resolver.layer(GLOBAL))
    if resolver.cached_folds():
        raise CommandError(f"{resolver.cached_folds()} folds survived; the cold samples are warm")


def _ms(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def single_device(store: MemoryStore, rng: random.Random) -> tuple[list[float], list[float]]:
    """Cold and warm ``Fleet.encoded`` times (ms) for devices of distinct signatures."""
    fleet = Fleet(store)
    members = fleet.members()
    firsts = [devices[0] for devices in members.signatures.values()]
    chosen = rng.sample(firsts, min(COLD_SAMPLES, len(firsts)))
    cold: list[float] = []
    for device in chosen:
        forget_folds(fleet.resolver)
        cold.append(_ms(lambda d=device: fleet.encoded(d)))
    warm = [_ms(lambda d=device: fleet.encoded(d)) for device in chosen]
    return cold, warm


def reference_tree(
    schema: Schema, defaults: Mapping[Path, Value], layers: Sequence[Layer], facts: DeviceFacts
) -> Tree:
    """An independent fold, leaf by leaf: ``defaults`` (the schema's, flattened),
    then each layer in precedence order (tombstones, then values) unless a lower
    layer locked the path, then the keys this device does not support removed.

    Assumes one layer per tier (no tied dimensions), as in this bench's fleet.
    """
    leaves = dict(defaults)
    locks: list[Path] = []
    for layer in layers:
        for path in (*sorted(layer.unsets), *sorted(layer.sets)):
            if any(is_prefix(lock, path) or is_prefix(path, lock) for lock in locks):
                continue
            _remove(leaves, path)
            if path in layer.sets:
                leaves[path] = layer.sets[path]
        locks.extend(layer.locks)
    for spec in schema:
        reason = spec.applies_to(
            hardware=facts.hardware, firmware=facts.firmware, agent_version=facts.agent_version
        )
        if reason is not None:
            _remove(leaves, spec.path)
    return unflatten(leaves)


def _remove(leaves: dict[Path, Value], path: Path) -> None:
    """Remove the leaf at ``path``, any leaf above it and every leaf below it."""
    for depth in range(1, len(path)):
        leaves.pop(path[:depth], None)
    if leaves.pop(path, UNSET) is not UNSET:
        return  # a leaf has nothing below it
    for leaf in [leaf for leaf in leaves if is_prefix(path, leaf)]:
        del leaves[leaf]


@dataclass(frozen=True, slots=True)
class Naive:
    """Naive times (ms) per sampled device, and what the check compared."""

    resolve_ms: list[float]
    impact_ms: list[float]
    changed: int  # sampled devices whose config the root edit changes
    checked: int
    referenced: int


def naive(fleet: Fleet, edited: Layer, rng: random.Random) -> Naive:
    """Fold and encode sampled devices with nothing shared, before and after
    the root edit; check each against the fleet's (memoised) encoding."""
    assert fleet.schema is not None
    members = fleet.members()
    fleet.hold_all_layers()
    resolver = Resolver(fleet.hierarchy, _layers(fleet.resolver), fleet.schema)
    original = resolver.layer(GLOBAL)
    defaults = flatten(fleet.schema.defaults())
    sample = rng.sample(sorted(members.facts), min(NAIVE_SAMPLES, len(members.facts)))
    resolve_ms: list[float] = []
    impact_ms: list[float] = []
    changed = 0
    for index, device in enumerate(sample):
        facts = members.facts[device]
        forget_folds(resolver)
        start = time.perf_counter()
        before = Encoded.trusted(resolver.resolve(facts).tree)
        middle = time.perf_counter()
        resolver.put_layer(GLOBAL, edited)  # forgets every fold, as above
        after = Encoded.trusted(resolver.resolve(facts).tree)
        differs = before.etag != after.etag
        end = time.perf_counter()
        changed += differs
        resolver.put_layer(GLOBAL, original)
        resolve_ms.append((middle - start) * 1000)
        impact_ms.append((end - start) * 1000)
        ours = fleet.encoded(device)
        if ours.cbor != before.cbor:
            raise CommandError(f"{device}: the fleet's effective config differs from a naive fold")
        if index < REFERENCE_SAMPLES:
            stack = [
                resolver.layer(layer_id) for tier in resolver.tiers(facts) for layer_id in tier
            ]
            expected = encode(reference_tree(fleet.schema, defaults, stack, facts))
            if expected != ours.cbor:
                raise CommandError(
                    f"{device}: the fleet's effective config differs from the leaf-by-leaf "
                    f"reference fold (tiers {_show_tiers(resolver.tiers(facts))})"
                )
    sampled = len(sample)
    return Naive(resolve_ms, impact_ms, changed, sampled, min(REFERENCE_SAMPLES, sampled))


def _layers(resolver: Resolver) -> dict[LayerId, Layer]:
    return {layer_id: resolver.layer(layer_id) for layer_id in resolver.layer_ids()}


def _show_tiers(tiers: Tiers) -> str:
    return " < ".join("+".join(tier) for tier in tiers)


@dataclass(frozen=True, slots=True)
class FleetTimes:
    """Where the full-fleet time went (seconds)."""

    load_s: float  # Fleet(store): schema and layers
    members_s: float  # members(): every device's facts and signature
    encode_all_s: float  # encoded() for every device

    @property
    def total_s(self) -> float:
        return self.load_s + self.members_s + self.encode_all_s


def full_fleet(store: MemoryStore) -> tuple[Fleet, FleetTimes]:
    """A new fleet with every device's effective configuration encoded."""
    start = time.perf_counter()
    fleet = Fleet(store)
    loaded = time.perf_counter()
    fleet.members()
    admitted = time.perf_counter()
    fleet.warm()  # every device's configuration, encoded (what a gateway does at start)
    end = time.perf_counter()
    return fleet, FleetTimes(loaded - start, admitted - loaded, end - admitted)


def encoding_ms(fleet: Fleet, rng: random.Random) -> tuple[float, int]:
    """Mean time (ms) of the canonical encoding and ETag alone, over the
    configurations of sampled signatures (already resolved), and the count."""
    members = fleet.members()
    firsts = [devices[0] for devices in members.signatures.values()]
    trees = [fleet.encoded(d).tree for d in rng.sample(firsts, min(COLD_SAMPLES, len(firsts)))]
    return statistics.fmean(_ms(lambda t=tree: Encoded.trusted(t)) for tree in trees), len(trees)


# ---------------------------------------------------------------- the command


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``bench resolve`` prints (``--json``: this, as a document)."""

    shape: Shape
    group_nodes: int
    device_layers: int
    setup_s: float
    signatures: int
    memoised_folds: int
    layers_per_stack: tuple[int, int]  # fewest, most
    cold_warm_samples: int
    naive_samples: int
    reference_samples: int
    ours: Side
    naive: Side  # fleet_s and impact_s extrapolated from the sample
    fleet_times: FleetTimes
    encode_ms: float  # canonical encoding + ETag of one configuration, mean
    encode_samples: int
    edited_paths: tuple[str, ...]
    reached: int
    changed: int
    naive_changed: int  # of the naive sample
    rss_after_populating_mib: float
    peak_rss_mib: float
    load_average: tuple[float, float, float]  # 1, 5, 15 minutes, at the start
    total_s: float


def measure(shape: Shape) -> Report:
    """Build the fleet, measure both techniques, check them against each other."""
    if shape.devices < 1 or shape.leaves < 100 or shape.groups < 10:
        raise CommandError("need --devices >= 1, --leaves >= 100 and --groups >= 10")
    began = time.perf_counter()
    load_average = os.getloadavg()
    rng = random.Random(shape.seed + 1)
    population = populate(shape)
    rss_populated = peak_rss_mib()

    cold, warm = single_device(population.store, rng)
    gc.collect()  # that fleet is gone; the next one starts from nothing

    fleet, times = full_fleet(population.store)
    encode_ms, encode_samples = encoding_ms(fleet, rng)
    members = fleet.members()
    stacks = [sum(len(tier) for tier in tiers) for tiers, _ in members.signatures]
    edited, edited_paths = root_edit(rng, fleet)
    start = time.perf_counter()
    impact = fleet.impact(GLOBAL, edited)
    impact_s = time.perf_counter() - start

    baseline = naive(fleet, edited, rng)
    if baseline.checked == impact.reached and baseline.changed != impact.changed:
        raise CommandError(
            f"the root edit changes {impact.changed:,} devices by Fleet.impact but "
            f"{baseline.changed:,} by naive folds of every device"
        )
    naive_p50 = percentile(baseline.resolve_ms, 0.5)
    naive_p99 = percentile(baseline.resolve_ms, 0.99)
    return Report(
        shape=shape,
        group_nodes=population.groups,
        device_layers=population.device_layers,
        setup_s=population.setup_s,
        signatures=len(members.signatures),
        memoised_folds=fleet.resolver.cached_folds(),
        layers_per_stack=(min(stacks), max(stacks)),
        cold_warm_samples=len(cold),
        naive_samples=baseline.checked,
        reference_samples=baseline.referenced,
        ours=Side(
            cold_p50_ms=percentile(cold, 0.5),
            cold_p99_ms=percentile(cold, 0.99),
            warm_p50_ms=percentile(warm, 0.5),
            warm_p99_ms=percentile(warm, 0.99),
            fleet_s=times.total_s,
            impact_s=impact_s,
        ),
        naive=Side(
            cold_p50_ms=naive_p50,
            cold_p99_ms=naive_p99,
            warm_p50_ms=naive_p50,  # nothing is cached: warm is cold
            warm_p99_ms=naive_p99,
            fleet_s=statistics.fmean(baseline.resolve_ms) * len(members.facts) / 1000,
            impact_s=statistics.fmean(baseline.impact_ms) * impact.reached / 1000,
        ),
        fleet_times=times,
        encode_ms=encode_ms,
        encode_samples=encode_samples,
        edited_paths=tuple(format_path(path) for path in edited_paths),
        reached=impact.reached,
        changed=impact.changed,
        naive_changed=baseline.changed,
        rss_after_populating_mib=rss_populated,
        peak_rss_mib=peak_rss_mib(),
        load_average=load_average,
        total_s=time.perf_counter() - began,
    )


def verdicts(report: Report) -> list[str]:
    """The issue's targets, each PASS or MISS with the figure behind it."""
    ours = report.ours
    checks = [
        (
            f"warm resolution p99 <= {TARGET_WARM_P99_MS} ms",
            ours.warm_p99_ms <= TARGET_WARM_P99_MS,
            f"{ours.warm_p99_ms:.3f} ms",
        ),
        (
            f"full fleet from cold <= {TARGET_FLEET_S:.0f} s",
            ours.fleet_s <= TARGET_FLEET_S,
            f"{ours.fleet_s:.2f} s",
        ),
        (
            f"root-edit impact <= {TARGET_IMPACT_S:.0f} s",
            ours.impact_s <= TARGET_IMPACT_S,
            f"{ours.impact_s:.2f} s",
        ),
        (
            "peak RSS <= 1 GiB",
            report.peak_rss_mib <= TARGET_RSS_MIB,
            f"{report.peak_rss_mib:.0f} MiB",
        ),
    ]
    return [f"{'PASS' if ok else 'MISS'}  {name}: {figure}" for name, ok, figure in checks]


def to_document(report: Report) -> dict[str, object]:
    """The report as a JSON document, with the verdicts."""
    return {
        **asdict(report),
        "naive_extrapolated": ["fleet_s", "impact_s"],
        "verdicts": verdicts(report),
    }


def render(report: Report) -> str:
    """The report for people: the fleet, a table (edgecfg vs naive), notes, verdicts."""
    shape, ours, theirs, times = report.shape, report.ours, report.naive, report.fleet_times
    fewest, most = report.layers_per_stack
    return "\n".join(
        [
            f"fleet: {shape.devices:,} devices, {shape.leaves:,}-leaf schema, "
            f"{report.group_nodes} group nodes, {report.device_layers:,} device layers, "
            f"seed {shape.seed} (set up in {report.setup_s:.1f} s)",
            f"stacks: {fewest}-{most} layers; {report.signatures:,} distinct signatures; "
            f"{report.memoised_folds:,} memoised folds",
            "",
            _row("", "edgecfg", "naive"),
            _row(
                "single device, cold p50 / p99 (ms)",
                _pair(ours.cold_p50_ms, ours.cold_p99_ms),
                _pair(theirs.cold_p50_ms, theirs.cold_p99_ms),
            ),
            _row(
                "single device, warm p50 / p99 (ms)",
                _pair(ours.warm_p50_ms, ours.warm_p99_ms),
                _pair(theirs.warm_p50_ms, theirs.warm_p99_ms),
            ),
            _row("full fleet from cold (s)", f"{ours.fleet_s:.2f}", f"{theirs.fleet_s:.1f} *"),
            _row("root-edit impact (s)", f"{ours.impact_s:.2f}", f"{theirs.impact_s:.1f} *"),
            _row("peak RSS, whole run (MiB)", f"{report.peak_rss_mib:.0f}", "-"),
            "",
            f"cold/warm: {report.cold_warm_samples:,} devices of distinct signatures, every "
            "fold forgotten before each cold one; naive caches nothing, so warm = cold",
            f"full fleet: load {times.load_s:.2f} s + members {times.members_s:.2f} s "
            f"+ encoded() for every device {times.encode_all_s:.2f} s, of which canonical "
            f"CBOR + ETag ~{report.encode_ms:.2f} ms x {report.signatures:,} signatures = "
            f"{report.encode_ms * report.signatures / 1000:.1f} s "
            f"(timed on {report.encode_samples:,} configs)",
            f"root edit of {', '.join(report.edited_paths)}: reached {report.reached:,} "
            f"devices, changed {report.changed:,} (naive: {report.naive_changed:,} of "
            f"{report.naive_samples:,} sampled)",
            f"* extrapolated: mean of {report.naive_samples:,} sampled devices x device count "
            "(impact: fold and encode before and after, per reached device)",
            f"RSS after populating the store: {report.rss_after_populating_mib:.0f} MiB; "
            "load average at the start: " + " ".join(f"{load:.2f}" for load in report.load_average),
            f"check: fleet == naive for {report.naive_samples:,} devices, == leaf-by-leaf "
            f"reference fold for {report.reference_samples:,}"
            + ("; impact == naive" if report.naive_samples == report.reached else ""),
            f"took {report.total_s:.1f} s",
            "",
            *verdicts(report),
        ]
    )


def _pair(p50: float, p99: float) -> str:
    return f"{p50:.3f} / {p99:.3f}"


def _row(label: str, ours: str, theirs: str) -> str:
    return f"{label:<38} {ours:>16} {theirs:>16}"


def run_resolve_bench(shape: Shape, *, as_json: bool) -> int:
    """Entry point of ``edgecfg bench resolve``; returns the exit code."""
    report = measure(shape)
    print(json.dumps(to_document(report), indent=2) if as_json else render(report))
    return 0
