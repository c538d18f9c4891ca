"""Dry runs of layer edits (edgecfg/fleet/impact.py, Fleet.impact): what the dry
run says an edit does is what writing it does, and a write is refused exactly
when its dry run finds a lock, a conflict or a violation, or when the layer's
own values break the schema where no device inherits them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Layer
from edgecfg.core.path import Path, parse_path
from edgecfg.core.schema import value_problems
from edgecfg.core.tree import UNSET, Tree, Value, flatten, get
from edgecfg.errors import FleetValidationError, WriteRefused
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.impact import SAMPLE, refuse, schema_refusals
from edgecfg.store import DeviceRecord, MemoryStore
from tests.paths import SCHEMA

DEVICES = {
    "dev-1": {"region": "eu/west", "function": "pumps"},
    "dev-2": {"region": "eu/west"},
    "dev-3": {"region": "eu/north", "function": "pumps"},
    "dev-4": {"region": "us"},
}
LAYERS = [LayerId(name) for name in (
    "global", "region/eu", "region/eu/west", "region/us", "function/pumps", "device/dev-1",
)]  # fmt: skip
VALUES: dict[str, st.SearchStrategy[Value]] = {
    "net.uplink.interval_s": st.sampled_from([5, 60, 600, 3600]),  # 5: below the minimum
    "log.level": st.sampled_from(["error", "info", "verbose"]),  # verbose: not in the enum
    "net.uplink.jitter_pct": st.integers(0, 50),
}
PATHS = [parse_path(p) for p in VALUES]


@st.composite
def edits(draw: st.DrawFn) -> tuple[LayerId, Layer]:
    sets: dict[Path, Value] = {}
    for dotted in draw(st.lists(st.sampled_from(sorted(VALUES)), unique=True, max_size=2)):
        sets[parse_path(dotted)] = draw(VALUES[dotted])
    unsets = frozenset(draw(st.lists(st.sampled_from(PATHS), max_size=1))) - frozenset(sets)
    locks = frozenset(draw(st.lists(st.sampled_from(PATHS), max_size=1)))
    return draw(st.sampled_from(LAYERS)), Layer(sets, unsets, locks)


def fresh_fleet() -> Fleet:
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for name, groups in DEVICES.items():
        fleet.add_device(DeviceRecord(DeviceId(name), groups, hardware="nbiot-sensor-r3",
                                      firmware="2.1.0", agent_version="1.0.0"))  # fmt: skip
    return fleet


def configs(fleet: Fleet) -> dict[DeviceId, Tree]:
    return {DeviceId(name): fleet.encoded(DeviceId(name)).tree for name in DEVICES}


@settings(max_examples=80, deadline=None)
@given(st.lists(edits(), min_size=1, max_size=6))
def test_a_dry_run_predicts_the_write(script: list[tuple[LayerId, Layer]]) -> None:
    fleet = fresh_fleet()
    for step, (layer_id, edit) in enumerate(script):
        new = fleet.resolver.layer(layer_id).merged(edit)
        impact = fleet.impact(layer_id, new)
        before = configs(fleet)
        try:
            refuse(impact)
            predicted: type[WriteRefused] | None = None
        except WriteRefused as refusal:
            predicted = type(refusal)
        assert fleet.schema is not None
        if predicted is None and value_problems(fleet.schema, new.sets):
            # values no device inherits (a layer above unsets them) must be valid too
            predicted = FleetValidationError
        if predicted is not None:
            with pytest.raises(predicted):
                fleet.write_layer(layer_id, edit, author="t", message="", now=2.0 + step)
            assert configs(fleet) == before  # nothing written
            continue
        fleet.write_layer(layer_id, edit, author="t", message="", now=2.0 + step)
        after = configs(fleet)
        changed = {device for device in before if before[device] != after[device]}
        assert impact.changed == len(changed)
        assert impact.reached >= len(changed)
        assert list(impact.sample) == sorted(changed)[:SAMPLE]
        # every path that moved is reported once, counting the devices it moved
        # on, with an example device that shows the reported before and after
        for change in impact.changes:
            moved = [
                device for device in changed
                if get(before[device], change.path) != get(after[device], change.path)
            ]  # fmt: skip
            assert len(moved) == change.devices, change
            example = change.example
            assert example in moved
            assert get(before[example], change.path) == change.before, change
            assert get(after[example], change.path) == change.after, change
        reported = {change.path for change in impact.changes}
        for device in changed:
            leaves = set(flatten(before[device])) ^ set(flatten(after[device]))
            leaves |= {
                path for path, value in flatten(after[device]).items()
                if get(before[device], path) != value
            }  # fmt: skip
            assert leaves <= reported, (device, leaves - reported)


def test_an_edit_that_changes_nothing_reaches_devices_but_changes_none() -> None:
    fleet = fresh_fleet()
    layer = fleet.resolver.layer(LayerId("region/eu"))
    impact = fleet.impact(LayerId("region/eu"), layer)
    assert (impact.reached, impact.changed, impact.changes) == (3, 0, ())
    assert get(fleet.encoded(DeviceId("dev-1")).tree, PATHS[0]) is not UNSET


def test_schema_refusals_list_what_the_write_refuses_first() -> None:
    fleet = fresh_fleet()
    layer = Layer({parse_path("no.such.key"): 1, PATHS[0]: 5}, frozenset(), frozenset())
    refusals = schema_refusals(fleet.schema, LayerId("region/us"), layer)
    assert len(refusals) == 2
    assert "no.such.key" in refusals[0] and "not declared by schema" in refusals[0]
    assert "region/us: net.uplink.interval_s: expected" in refusals[1]
    with pytest.raises(FleetValidationError, match=re.escape(refusals[0])):
        fleet.write_layer(LayerId("region/us"), layer, author="t", message="m", now=2.0)
    assert schema_refusals(None, LayerId("region/us"), layer) == []
