"""Served versions are version vectors: a base that left memory (or a gateway
restart) is rebuilt from the layers' history, so a device still gets a delta,
and the database holds a few bytes per version instead of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.errors import StoreError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import NotModified, Representation, SyncService
from edgecfg.store import DeviceRecord, MemoryStore, SQLiteStore, Store
from edgecfg.wire.cbor import Encoded
from edgecfg.wire.delta import apply_delta
from edgecfg.wire.numbers import ContentFormat

DEVICES = [DeviceId(f"dev-{n}") for n in range(4)]
KEYS = [("net", "interval"), ("net", "mode"), ("log", "level")]
LAYERS = ["global", "region/eu", "region/us", *(f"device/{d}" for d in DEVICES)]


def fleet_of(store: Store) -> Fleet:
    fleet = Fleet(store)
    for number, device in enumerate(DEVICES):
        region = ("eu", "us")[number % 2]
        fleet.add_device(DeviceRecord(device, {"region": region}, hardware="hw-1"))
        if number % 2 == 0:  # half of them have a layer of their own
            own = layer_from_parts(sets={("device", "id"): device})
            fleet.write_layer(LayerId(f"device/{device}"), own, author="t", message="m", now=1.0)
    fleet.write_layer(
        LayerId("global"), layer_from_parts(sets={KEYS[0]: 60}), author="t", message="m", now=1.0
    )
    return fleet


def edit(fleet: Fleet, layer: str, key: tuple[str, ...], value: int) -> None:
    fleet.write_layer(
        LayerId(layer), layer_from_parts(sets={key: value}), author="t", message="m", now=2.0
    )


def served(answer: Representation | NotModified, held: Encoded) -> Encoded:
    """What the device holds after this answer."""
    if isinstance(answer, NotModified):
        return held
    if answer.content_format == ContentFormat.DELTA:
        return Encoded.of(apply_delta(held, answer.payload))  # type: ignore[arg-type]
    return Encoded.from_bytes(answer.payload)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "fleet.db")


def test_a_base_that_left_memory_is_rebuilt_and_the_device_gets_a_delta(store: Store) -> None:
    fleet = fleet_of(store)
    service = SyncService(fleet, cache_bytes=1, clock=lambda: 10.0)  # keeps nothing at hand
    device = DEVICES[0]
    first = service.config(device)
    assert isinstance(first, Representation)
    held = Encoded.from_bytes(first.payload)
    assert service.flush() == 1
    assert store.get_versions(held.etag)
    assert not store.has_blob(held.etag)  # a vector, not the configuration
    edit(fleet, "region/eu", KEYS[1], 7)
    answer = service.config(device, base=held.etag)
    assert isinstance(answer, Representation)
    assert answer.content_format == ContentFormat.DELTA
    assert served(answer, held) == fleet.encoded(device)


def test_a_restarted_gateway_still_serves_deltas(store: Store) -> None:
    fleet = fleet_of(store)
    service = SyncService(fleet)
    device = DEVICES[1]  # no layer of its own
    first = service.config(device)
    assert isinstance(first, Representation)
    held = Encoded.from_bytes(first.payload)
    service.flush()
    edit(fleet, "global", KEYS[2], 3)
    restarted = SyncService(Fleet(store))
    answer = restarted.config(device, base=held.etag)
    assert isinstance(answer, Representation)
    assert answer.content_format == ContentFormat.DELTA
    assert served(answer, held) == restarted.fleet.encoded(device)


def test_a_device_that_changed_groups_gets_the_full_config(store: Store) -> None:
    """Its vector now names the revisions of other layers: the rebuilt
    config's ETag differs from the one it holds, so it is not used."""
    fleet = fleet_of(store)
    service = SyncService(fleet, cache_bytes=1)
    device = DEVICES[0]
    edit(fleet, "region/eu", KEYS[1], 5)
    first = service.config(device)
    assert isinstance(first, Representation)
    service.flush()
    edit(fleet, "region/us", KEYS[1], 9)
    fleet.add_device(DeviceRecord(device, {"region": "us"}, hardware="hw-1"))
    answer = service.config(device, base=first.etag)
    assert isinstance(answer, Representation)
    assert answer.content_format == ContentFormat.CBOR  # the old stack cannot be rebuilt
    assert Encoded.from_bytes(answer.payload) == fleet.encoded(device)


def test_a_version_vector_is_a_few_bytes(store: Store) -> None:
    fleet = fleet_of(store)
    for device in DEVICES:
        assert len(fleet.served(device).vector) <= 8  # schema version + one per layer


def test_a_vector_that_names_a_lost_revision_or_garbage_rebuilds_nothing() -> None:
    fleet = fleet_of(MemoryStore())
    device = DEVICES[0]
    assert fleet.rebuild(device, b"\xff") is None  # not CBOR
    assert fleet.rebuild(device, b"\x81\x00") is None  # wrong length for the stack
    vector = bytearray(fleet.served(device).vector)
    vector[-1] = 0x17  # a revision of its own layer that was never written
    assert fleet.rebuild(device, bytes(vector)) is None


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(
                ["global", "region/eu", "region/us", *(f"device/{d}" for d in DEVICES)]
            ),
            st.sampled_from(KEYS),
            st.integers(0, 5),
            st.sets(st.sampled_from(DEVICES)),
        ),
        min_size=1,
        max_size=8,
    ),
    cache_bytes=st.sampled_from([1, 10**9]),
)
def test_any_held_version_leads_to_the_current_config(
    steps: list[tuple[str, tuple[str, ...], int, set[DeviceId]]], cache_bytes: int
) -> None:
    """Devices sync at random moments between random writes; each one's next
    answer, applied to what it holds, is exactly its current config, and is a
    delta (or 2.03) whenever it held a version this gateway served."""
    fleet = fleet_of(MemoryStore())
    service = SyncService(fleet, cache_bytes=cache_bytes)
    holding: dict[DeviceId, Encoded] = {}
    for layer, key, value, syncing in steps:
        edit(fleet, layer, key, value)
        for device in sorted(syncing):
            base = holding.get(device)
            answer = service.config(device, base=None if base is None else ETag(base.etag))
            if base is not None:
                assert not (
                    isinstance(answer, Representation)
                    and answer.content_format == ContentFormat.CBOR
                ), "a served base was forgotten"
                holding[device] = served(answer, base)
            else:
                assert isinstance(answer, Representation)
                holding[device] = Encoded.from_bytes(answer.payload)
            assert holding[device] == fleet.encoded(device)
        if value % 2:
            service.flush()


def test_equal_configs_of_devices_of_different_stacks_both_get_deltas() -> None:
    """dev-3's own layer makes its config equal to dev-1's: one ETag, two
    stacks, two vectors; each device's base is rebuilt from its own."""
    fleet = fleet_of(MemoryStore())
    service = SyncService(fleet, cache_bytes=1)
    edit(fleet, "device/dev-3", KEYS[0], 60)  # what global says: equal configs
    held = {}
    for device in (DEVICES[1], DEVICES[3]):
        answer = service.config(device)
        assert isinstance(answer, Representation)
        held[device] = Encoded.from_bytes(answer.payload)
    assert held[DEVICES[1]].etag == held[DEVICES[3]].etag
    service.flush()
    assert len(fleet.store.get_versions(held[DEVICES[1]].etag)) == 2
    edit(fleet, "global", KEYS[2], 4)
    for device in (DEVICES[1], DEVICES[3]):
        answer = service.config(device, base=held[device].etag)
        assert isinstance(answer, Representation)
        assert answer.content_format == ContentFormat.DELTA, device
        assert served(answer, held[device]) == fleet.encoded(device)


def test_a_flush_the_store_refuses_is_kept_for_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    service = SyncService(fleet_of(store))
    answer = service.config(DEVICES[0])
    assert isinstance(answer, Representation)

    def failing(versions: object, *, now: float) -> None:
        raise StoreError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(store, "put_versions", failing)
        with pytest.raises(StoreError, match="disk full"):
            service.flush()
    assert service.flush() == 1
    assert store.get_versions(answer.etag)
