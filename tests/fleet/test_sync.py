"""The sync service (edgecfg/fleet/sync.py): what a device is sent, independent of CoAP.

Over real CoAP the same answers are checked in tests/gateway/test_coap.py; here
the law behind them: whatever versions a device holds, the answer it gets
(2.03, a delta, or the full config) turns what it holds into the target.
"""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.core.path import Path, parse_path
from edgecfg.core.tree import UNSET, UnsetType, Value, get
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import NotModified, Representation, SyncService
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.cbor import Encoded, decode
from edgecfg.wire.delta import apply_delta_encoded
from edgecfg.wire.numbers import ContentFormat
from tests.paths import SCHEMA

DEVICE = DeviceId("dev-1")
REGION = LayerId("region/eu")

# a few keys of every priority class of the fixture schema, with values it allows
VALUES: dict[str, st.SearchStrategy[Value]] = {
    "net.uplink.interval_s": st.integers(10, 86400),  # critical
    "net.coap.block_size": st.sampled_from([16, 32, 64, 128, 256, 512, 1024]),  # critical
    "net.uplink.jitter_pct": st.integers(0, 50),
    "log.level": st.sampled_from(["error", "warn", "info", "debug", "trace"]),
    "device.name": st.text(max_size=64),
    "scripts.on_alarm": st.none() | st.text(max_size=300),  # bulk
}

Edit = dict[str, "Value | UnsetType"]  # dotted path -> new value, or UNSET to unset it

edits: st.SearchStrategy[list[Edit]] = st.lists(
    st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=4, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {path: st.just(UNSET) | VALUES[path] for path in chosen}
        )
    ),
    min_size=1,
    max_size=6,
)


def fresh_fleet() -> Fleet:
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    fleet.add_device(
        DeviceRecord(DEVICE, {"region": "eu"}, hardware="nbiot-sensor-r3", firmware="2.1.0",
                     agent_version="1.0.0")
    )  # fmt: skip
    return fleet


def write(fleet: Fleet, edit: Edit, now: float) -> None:
    sets = {parse_path(p): v for p, v in edit.items() if not isinstance(v, UnsetType)}
    unsets = [parse_path(p) for p, v in edit.items() if isinstance(v, UnsetType)]
    layer = layer_from_parts(sets=sets, unsets=unsets)
    fleet.write_layer(REGION, layer, author="t", message="", now=now)


def received(held: Encoded | None, answer: Representation | NotModified) -> Encoded:
    """What the device holds after applying ``answer`` to ``held``."""
    if isinstance(answer, NotModified):
        assert held is not None and answer.etag == held.etag
        return held
    if answer.content_format == ContentFormat.DELTA:
        assert held is not None
        result = apply_delta_encoded(held, answer.payload)
    else:
        assert answer.content_format == ContentFormat.CBOR
        tree = decode(answer.payload)
        assert isinstance(tree, dict)
        result = Encoded.of(tree)
    assert result.etag == answer.etag
    return result


def critical_paths(fleet: Fleet) -> list[Path]:
    assert fleet.schema is not None
    return [spec.path for spec in fleet.schema if spec.priority == "critical"]


@settings(max_examples=60, deadline=None)
@given(edits, st.binary(min_size=8, max_size=8))
def test_any_held_version_is_brought_to_the_target(history: list[Edit], stranger: bytes) -> None:
    fleet = fresh_fleet()
    service = SyncService(fleet)
    held: list[Encoded] = [service.current(DEVICE)]
    for step, edit in enumerate(history):
        write(fleet, edit, now=2.0 + step)
        held.append(service.current(DEVICE))
    target = service.current(DEVICE)
    for version in held:
        answer = service.config(DEVICE, base=version.etag)
        if version.etag == target.etag:
            assert answer == NotModified(target.etag)
        else:
            assert isinstance(answer, Representation)
            assert answer.content_format == ContentFormat.DELTA  # the base is known
        assert received(version, answer) == target
    # a base the gateway never served, or none: the full config
    for base in (ETag(stranger), None):
        answer = service.config(DEVICE, base=base)
        if base != target.etag:
            assert isinstance(answer, Representation)
            assert answer.content_format == ContentFormat.CBOR
            assert received(None, answer) == target
    # after a restart the versions served before are still known (persisted)
    restarted = SyncService(Fleet(fleet.store))
    for version in held:
        assert received(version, restarted.config(DEVICE, base=version.etag)) == target


@settings(max_examples=40, deadline=None)
@given(edits)
def test_critical_first_then_the_rest_gives_exactly_the_target(
    history: list[Edit],
) -> None:
    # DESIGN §6: on a poor link the critical class first, the rest later
    fleet = fresh_fleet()
    service = SyncService(fleet)
    held: list[Encoded] = [service.current(DEVICE)]
    for step, edit in enumerate(history):
        write(fleet, edit, now=2.0 + step)
        held.append(service.current(DEVICE))
    target = service.current(DEVICE)
    critical = critical_paths(fleet)
    for version in held:
        middle = received(version, service.config(DEVICE, base=version.etag, prio="critical"))
        for path in critical:
            assert get(middle.tree, path) == get(target.tree, path), path
        # nothing else moved: every other key is as the device held it
        moved = [
            p for p in VALUES if get(middle.tree, parse_path(p)) != get(version.tree, parse_path(p))
        ]
        assert all(parse_path(p) in critical for p in moved), moved
        assert received(middle, service.config(DEVICE, base=middle.etag)) == target


def test_the_same_request_gets_the_same_bytes() -> None:
    # Block2 resume (DESIGN §5): any block at any time while the ETag is current
    fleet = fresh_fleet()
    service = SyncService(fleet)
    old = service.current(DEVICE)
    write(fleet, {"net.uplink.interval_s": 600}, now=2.0)
    first = service.config(DEVICE, base=old.etag)
    service.flush()  # what a gateway does a few times a second, and when it stops
    again = SyncService(Fleet(fleet.store)).config(DEVICE, base=old.etag)
    assert isinstance(first, Representation)
    assert first == again


@pytest.mark.parametrize("prio", [None, "critical"])
def test_a_device_that_is_current_gets_not_modified(prio: Literal["critical"] | None) -> None:
    service = SyncService(fresh_fleet())
    current = service.current(DEVICE)
    assert service.config(DEVICE, base=current.etag, prio=prio) == NotModified(current.etag)
