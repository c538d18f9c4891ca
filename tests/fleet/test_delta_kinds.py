"""An agent from before the ops+deflate delta kind (agent 1.0.0) is never sent
one: it could not decode it and would fetch the whole config instead."""

from __future__ import annotations

import pytest

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import Representation, SyncService, _is_legacy_agent  # pyright: ignore[reportPrivateUsage]
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.cbor import Encoded
from edgecfg.wire.delta import LEGACY_KINDS, apply_delta, delta_kind, make_delta

PINS = {("pins", f"p{i:02d}"): f"sensor channel {i} alias kitchen-{i}" for i in range(40)}
EDITED = {("pins", f"p{i:02d}"): f"sensor channel {i} alias garage-{i}" for i in range(0, 40, 3)}


def fleet_of(agents: dict[str, str | None]) -> tuple[Fleet, SyncService]:
    fleet = Fleet(MemoryStore())
    for name, agent in agents.items():
        fleet.add_device(DeviceRecord(DeviceId(name), {}, agent_version=agent))
    fleet.write_layer(LayerId("global"), layer_from_parts(sets=PINS), author="t", message="",
                      now=1.0)  # fmt: skip
    return fleet, SyncService(fleet)


@pytest.mark.parametrize("first", ["new", "old"])
def test_devices_with_the_same_configs_get_the_kinds_their_agents_read(first: str) -> None:
    fleet, service = fleet_of({"old": "1.0.0", "new": "1.0.1", "silent": None})
    held = {d: service.current(DeviceId(d)) for d in ("old", "new", "silent")}
    fleet.write_layer(LayerId("global"), layer_from_parts(sets={**PINS, **EDITED}), author="t",
                      message="", now=2.0)  # fmt: skip
    order = [first, "new" if first == "old" else "old", "silent"]
    kinds: dict[str, str] = {}
    for device in order:
        answer = service.config(DeviceId(device), base=held[device].etag)
        assert isinstance(answer, Representation)
        kinds[device] = delta_kind(answer.payload)
        assert (
            apply_delta(held[device].tree, answer.payload) == service.current(DeviceId(device)).tree
        )
        again = service.config(DeviceId(device), base=held[device].etag)  # cached
        assert isinstance(again, Representation) and again.payload == answer.payload
    assert kinds["new"] == "ops+deflate"  # the smallest for this edit
    assert kinds["old"] != "ops+deflate"
    assert kinds["silent"] != "ops+deflate"  # no version reported yet


def test_an_agent_that_reports_its_new_version_gets_the_new_kind() -> None:
    fleet, service = fleet_of({"dev": "1.0.0"})
    held = service.current(DeviceId("dev"))
    fleet.add_device(DeviceRecord(DeviceId("dev"), {}, agent_version="1.0.1"))
    fleet.write_layer(LayerId("global"), layer_from_parts(sets={**PINS, **EDITED}), author="t",
                      message="", now=2.0)  # fmt: skip
    answer = service.config(DeviceId("dev"), base=held.etag)
    assert isinstance(answer, Representation)
    assert delta_kind(answer.payload) == "ops+deflate"


def test_make_delta_keeps_to_the_kinds_it_is_given() -> None:
    fleet, service = fleet_of({"dev": "1.0.1"})
    old = service.current(DeviceId("dev"))
    new = Encoded.trusted({**old.tree, "extra": 1})
    free = make_delta(old, new)
    legacy = make_delta(old, new, kinds=LEGACY_KINDS)
    for delta in (free, legacy):
        assert apply_delta(old.tree, delta) == new.tree
    fleet.write_layer(LayerId("global"), layer_from_parts(sets={**PINS, **EDITED}), author="t",
                      message="", now=2.0)  # fmt: skip
    target = service.current(DeviceId("dev"))
    assert delta_kind(make_delta(old, target)) == "ops+deflate"
    assert delta_kind(make_delta(old, target, kinds=LEGACY_KINDS)) != "ops+deflate"


@pytest.mark.parametrize(
    ("version", "legacy"),
    [(None, True), ("1.0.0", True), ("1", True), ("1.0", True), ("0.9.9", True),
     ("garbage", True), ("1.x", True), ("1.0.1", False), ("1.0.17", False), ("1.1", False),
     ("1.12.3", False), ("2.0.0", False)],
)  # fmt: skip
def test_which_agent_versions_predate_ops_deflate(version: str | None, legacy: bool) -> None:
    assert _is_legacy_agent(version) is legacy


def test_a_reader_s_limits_change_nothing_when_the_best_kind_is_allowed() -> None:
    """Limits are not a demand for every allowed kind: a one-value edit is
    the same plain ops delta either way (no compression tried for it)."""
    _, service = fleet_of({"dev": "1.0.0"})
    old = service.current(DeviceId("dev"))
    new = Encoded.trusted({**old.tree, "extra": 1})
    free = make_delta(old, new)
    assert delta_kind(free) == "ops"
    assert make_delta(old, new, kinds=LEGACY_KINDS) == free
