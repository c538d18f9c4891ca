"""The Store contract, checked against every implementation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.errors import NotFound, StoreConflict, StoreError, UsageError
from edgecfg.store import (
    BadVersion,
    DeviceRecord,
    Groups,
    MemoryStore,
    MergeRecord,
    OscoreState,
    RolloutDevice,
    RolloutEntry,
    RolloutRecord,
    Store,
    blob_etag,
    in_group,
)
from tests.store.conftest import FACTORIES
from tests.strategies import device_ids, device_records


def dev(id: str, **groups: str) -> DeviceRecord:
    return DeviceRecord(DeviceId(id), groups)


L = LayerId


# -- schemas -------------------------------------------------------------------


def test_put_schema_returns_record_that_get_schema_returns(store: Store) -> None:
    record = store.put_schema("net", 3, b"\xa1\x01\x02", now=10.0)
    assert (record.name, record.version, record.document, record.created_at) == (
        "net",
        3,
        b"\xa1\x01\x02",
        10.0,
    )
    assert store.get_schema("net", 3) == record


def test_get_schema_without_version_returns_latest(store: Store) -> None:
    store.put_schema("net", 1, b"one", now=1.0)
    store.put_schema("net", 5, b"five", now=2.0)
    assert store.get_schema("net").version == 5
    assert store.get_schema("net").document == b"five"


def test_reput_identical_schema_is_idempotent_and_keeps_first_record(store: Store) -> None:
    first = store.put_schema("net", 1, b"doc", now=1.0)
    again = store.put_schema("net", 1, b"doc", now=99.0)
    assert again == first
    assert store.schema_versions("net") == [1]


def test_reput_schema_with_different_document_raises_conflict(store: Store) -> None:
    store.put_schema("net", 1, b"doc", now=1.0)
    with pytest.raises(StoreConflict, match=r"'net' version 1"):
        store.put_schema("net", 1, b"other", now=2.0)
    assert store.get_schema("net", 1).document == b"doc"


def test_put_schema_not_newer_than_latest_raises_conflict(store: Store) -> None:
    store.put_schema("net", 4, b"four", now=1.0)
    with pytest.raises(StoreConflict, match=r"version 2 is not newer .* version 4"):
        store.put_schema("net", 2, b"two", now=2.0)
    assert store.schema_versions("net") == [4]


def test_schema_versions_are_independent_per_name(store: Store) -> None:
    store.put_schema("b", 7, b"x", now=1.0)
    store.put_schema("a", 1, b"y", now=1.0)
    store.put_schema("a", 2, b"z", now=1.0)
    assert store.schema_names() == ["a", "b"]
    assert store.schema_versions("a") == [1, 2]
    assert store.schema_versions("b") == [7]
    assert store.schema_versions("unknown") == []


def test_get_unknown_schema_raises_not_found(store: Store) -> None:
    store.put_schema("net", 1, b"doc", now=1.0)
    with pytest.raises(NotFound) as missing_name:
        store.get_schema("power")
    with pytest.raises(NotFound) as missing_version:
        store.get_schema("net", 2)
    assert missing_name.value.kind == "schema"
    assert missing_version.value.key == "net version 2"


@pytest.mark.parametrize("version", [-1, 2**63])
def test_schema_version_outside_sqlite_integers_is_a_usage_error(
    store: Store, version: int
) -> None:
    with pytest.raises(UsageError):
        store.put_schema("net", version, b"doc", now=1.0)
    assert store.schema_names() == []


# -- blobs ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00", b"config" * 10_000])
def test_put_blob_returns_sha256_prefix_and_get_blob_round_trips(store: Store, data: bytes) -> None:
    etag = store.put_blob(data)
    assert etag == hashlib.sha256(data).digest()[:8] == blob_etag(data)
    assert store.get_blob(etag) == data
    assert store.has_blob(etag)


def test_identical_blobs_share_one_etag(store: Store) -> None:
    first = store.put_blob(b"same")
    second = store.put_blob(bytes(bytearray(b"same")))
    assert first == second
    assert store.get_blob(first) == b"same"


def test_versions_keep_every_vector_of_an_etag_and_drop_by_age(store: Store) -> None:
    one, two, three = ETag(b"\x01" * 8), ETag(b"\x02" * 8), ETag(b"\x03" * 8)
    assert store.get_versions(one) == []
    store.put_versions([(one, b"\x83\x01\x02\x03"), (two, b"\x80")], now=100.0)
    store.put_versions([(one, b"\x83\x01\x02\x03"), (three, b"\x81\x07")], now=200.0)
    store.put_versions([(one, b"\x82\x01\x05")], now=250.0)  # equal config, other stack
    store.put_versions([], now=300.0)
    assert store.get_versions(one) == [b"\x83\x01\x02\x03", b"\x82\x01\x05"]  # oldest first
    assert store.get_versions(three) == [b"\x81\x07"]
    assert store.drop_versions(before=150.0) == 2  # one's first vector (kept at 100) and two
    assert store.get_versions(one) == [b"\x82\x01\x05"]
    assert store.get_versions(two) == []
    assert store.get_versions(three) == [b"\x81\x07"]
    assert store.drop_versions(before=150.0) == 0


def test_blob_etag_collision_with_different_bytes_raises_conflict(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def colliding(data: bytes) -> ETag:
        return ETag(b"\x00" * 8)

    monkeypatch.setattr("edgecfg.store.memory.blob_etag", colliding)
    monkeypatch.setattr("edgecfg.store.sql.blob_etag", colliding)
    etag = store.put_blob(b"first")
    with pytest.raises(StoreConflict, match="0000000000000000"):
        store.put_blob(b"second")
    assert store.get_blob(etag) == b"first"


def test_get_missing_blob_raises_not_found(store: Store) -> None:
    etag = blob_etag(b"never stored")
    assert not store.has_blob(etag)
    with pytest.raises(NotFound, match=etag.hex()):
        store.get_blob(etag)


# -- layers --------------------------------------------------------------------


def test_append_to_new_layer_creates_revision_1_without_parent(store: Store) -> None:
    content = store.put_blob(b"layer doc")
    revision = store.append_layer_revision(
        L("global"), content, parent=None, author="ops", message="init", now=5.0
    )
    assert (revision.layer, revision.revision, revision.parent) == ("global", 1, None)
    assert (revision.content, revision.author, revision.message) == (content, "ops", "init")
    assert revision.created_at == 5.0
    assert store.get_layer(L("global")) == revision


def test_append_with_head_as_parent_increments_revision(store: Store) -> None:
    a, b = store.put_blob(b"a"), store.put_blob(b"b")
    store.append_layer_revision(L("g"), a, parent=None, author="x", message="1", now=1.0)
    second = store.append_layer_revision(L("g"), b, parent=1, author="y", message="2", now=2.0)
    third = store.append_layer_revision(L("g"), a, parent=2, author="z", message="3", now=3.0)
    assert (second.revision, second.parent) == (2, 1)
    assert (third.revision, third.parent, third.content) == (3, 2, a)
    assert store.get_layer(L("g")) == third
    assert store.get_layer(L("g"), 2) == second


def test_append_with_stale_parent_raises_conflict_naming_layer_and_heads(store: Store) -> None:
    content = store.put_blob(b"a")
    store.append_layer_revision(L("region/eu"), content, parent=None, author="", message="", now=1)
    store.append_layer_revision(L("region/eu"), content, parent=1, author="", message="", now=2)
    with pytest.raises(StoreConflict) as conflict:
        store.append_layer_revision(L("region/eu"), content, parent=1, author="", message="", now=3)
    assert "'region/eu'" in str(conflict.value)
    assert "expected head revision 1" in str(conflict.value)
    assert "actual head is revision 2" in str(conflict.value)
    assert len(store.layer_history(L("region/eu"))) == 2


def test_append_without_parent_to_existing_layer_raises_conflict(store: Store) -> None:
    content = store.put_blob(b"a")
    store.append_layer_revision(L("g"), content, parent=None, author="", message="", now=1)
    with pytest.raises(StoreConflict, match="expected head none"):
        store.append_layer_revision(L("g"), content, parent=None, author="", message="", now=2)


def test_append_with_parent_to_missing_layer_raises_conflict(store: Store) -> None:
    content = store.put_blob(b"a")
    with pytest.raises(StoreConflict, match="layer does not exist"):
        store.append_layer_revision(L("g"), content, parent=3, author="", message="", now=1)
    assert store.layer_ids() == []


def test_append_with_unknown_content_raises_not_found_and_writes_nothing(store: Store) -> None:
    missing = blob_etag(b"not stored")
    with pytest.raises(NotFound) as error:
        store.append_layer_revision(L("g"), missing, parent=None, author="", message="", now=1)
    assert (error.value.kind, error.value.key) == ("blob", missing.hex())
    assert store.layer_history(L("g")) == []


def test_get_unknown_layer_or_revision_raises_not_found(store: Store) -> None:
    content = store.put_blob(b"a")
    store.append_layer_revision(L("g"), content, parent=None, author="", message="", now=1)
    with pytest.raises(NotFound) as no_layer:
        store.get_layer(L("h"))
    with pytest.raises(NotFound) as no_layer_at_revision:
        store.get_layer(L("h"), 1)
    with pytest.raises(NotFound) as no_revision:
        store.get_layer(L("g"), 2)
    assert no_layer.value.kind == no_layer_at_revision.value.kind == "layer"
    assert (no_revision.value.kind, no_revision.value.key) == ("layer revision", "g@2")


def test_layer_history_is_oldest_first_and_empty_for_unknown_layer(store: Store) -> None:
    contents = [store.put_blob(bytes([n])) for n in range(4)]
    parent: int | None = None
    for content in contents:
        parent = store.append_layer_revision(
            L("g"), content, parent=parent, author="", message="", now=1
        ).revision
    history = store.layer_history(L("g"))
    assert [r.revision for r in history] == [1, 2, 3, 4]
    assert [r.content for r in history] == contents
    assert store.layer_history(L("unknown")) == []


def test_layer_ids_are_sorted_and_filtered_by_text_prefix(store: Store) -> None:
    content = store.put_blob(b"a")
    for layer in ["region/eu", "global", "region/us", "regional", "device/dev-1", "region/eu"]:
        head = store.get_layer(L(layer)).revision if layer in store.layer_ids() else None
        store.append_layer_revision(L(layer), content, parent=head, author="", message="", now=1)
    assert store.layer_ids() == ["device/dev-1", "global", "region/eu", "region/us", "regional"]
    assert store.layer_ids("region/") == ["region/eu", "region/us"]
    assert store.layer_ids("region") == ["region/eu", "region/us", "regional"]
    assert store.layer_ids("zzz") == []


# -- devices -------------------------------------------------------------------


def test_put_device_round_trips_every_field(store: Store) -> None:
    record = DeviceRecord(
        DeviceId("dev-0042"),
        {"region": "eu/eu-west/site-17", "hardware": "nrf9160/rev-b"},
        hardware="nrf9160",
        firmware="2.4.1",
        agent_version="0.3.0",
        last_seen=1234.5,
        applied_etag=ETag(bytes(range(8))),
    )
    store.put_device(record)
    assert store.get_device(DeviceId("dev-0042")) == record
    assert store.has_device(DeviceId("dev-0042"))


def test_put_device_replaces_the_whole_record(store: Store) -> None:
    store.put_device(
        DeviceRecord(DeviceId("d"), {"region": "eu", "function": "meter"}, hardware="hw1")
    )
    replacement = DeviceRecord(DeviceId("d"), {"region": "us"})
    store.put_device(replacement)
    assert store.get_device(DeviceId("d")) == replacement
    assert list(store.iter_devices(group=("function", "meter"))) == []
    assert store.count_devices() == 1


def test_put_devices_stores_all_and_last_duplicate_wins(store: Store) -> None:
    store.put_devices([dev("b", region="eu"), dev("a", region="us"), dev("b", region="asia")])
    assert store.count_devices() == 2
    assert store.get_device(DeviceId("b")).groups == {"region": "asia"}
    assert list(store.iter_devices(group=("region", "eu"))) == []


def test_put_devices_writes_nothing_when_the_iterable_fails(store: Store) -> None:
    store.put_device(dev("keep"))

    def records() -> Iterator[DeviceRecord]:
        yield dev("new-1")
        yield dev("keep", region="changed")
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        store.put_devices(records())
    assert [r.id for r in store.iter_devices()] == ["keep"]
    assert store.get_device(DeviceId("keep")).groups == {}


def test_get_missing_device_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as error:
        store.get_device(DeviceId("ghost"))
    assert (error.value.kind, error.value.key) == ("device", "ghost")
    assert not store.has_device(DeviceId("ghost"))


def test_delete_device_removes_it_and_its_group_membership(store: Store) -> None:
    store.put_devices([dev("a", region="eu"), dev("b", region="eu")])
    store.delete_device(DeviceId("a"))
    assert not store.has_device(DeviceId("a"))
    assert [r.id for r in store.iter_devices(group=("region", "eu"))] == ["b"]
    with pytest.raises(NotFound):
        store.delete_device(DeviceId("a"))


def test_count_devices_counts_distinct_ids(store: Store) -> None:
    assert store.count_devices() == 0
    store.put_devices(dev(f"d{n}") for n in range(10))
    store.put_device(dev("d3", region="eu"))
    assert store.count_devices() == 10


def test_iter_devices_yields_all_sorted_by_id_across_pages(store: Store) -> None:
    ids = [f"dev-{n:05d}" for n in range(1234)]
    store.put_devices(dev(id, region=f"r/{n % 3}") for n, id in enumerate(reversed(ids)))
    assert [r.id for r in store.iter_devices()] == ids
    in_r1 = [r.id for r in store.iter_devices(group=("region", "r/1"))]
    assert in_r1 == sorted(in_r1)
    assert len(in_r1) == 1234 // 3 + (1 if 1234 % 3 > 1 else 0)


GROUP_PATHS = {
    "at-root": "eu",
    "child": "eu/west",
    "grandchild": "eu/west/site-1",
    "longer-name": "europe",
    "dash-sibling": "eu-west",
    "dot-sibling": "eu.x",
    "shorter": "e",
    "other": "us/east",
}


@pytest.mark.parametrize(
    ("group", "members"),
    [
        ("eu", ["at-root", "child", "grandchild"]),
        ("eu/west", ["child", "grandchild"]),
        ("eu/west/site-1", ["grandchild"]),
        ("eu/we", []),
        ("europe", ["longer-name"]),
        ("e", ["shorter"]),
        ("us", ["other"]),
    ],
)
def test_group_query_matches_path_and_below_on_slash_boundaries(
    store: Store, group: str, members: list[str]
) -> None:
    store.put_devices(dev(id, region=path, function="meter") for id, path in GROUP_PATHS.items())
    found = [r.id for r in store.iter_devices(group=("region", group))]
    assert found == sorted(members)
    assert found == sorted(id for id, path in GROUP_PATHS.items() if in_group(path, group))


def test_group_query_only_looks_at_its_dimension(store: Store) -> None:
    store.put_devices([dev("a", region="eu"), dev("b", function="eu"), dev("c")])
    assert [r.id for r in store.iter_devices(group=("function", "eu"))] == ["b"]
    assert list(store.iter_devices(group=("hardware", "eu"))) == []


@pytest.mark.parametrize(
    "group", [("region", ""), ("region", "eu/"), ("region", "/eu"), ("", "eu")]
)
def test_invalid_group_query_raises_usage_error(store: Store, group: tuple[str, str]) -> None:
    with pytest.raises(UsageError):
        store.iter_devices(group=group)


def test_writes_between_pages_of_an_iteration_succeed(store: Store) -> None:
    store.put_devices(dev(f"d{n:04d}") for n in range(1100))
    iterator = store.iter_devices()
    first = next(iterator)
    store.put_device(dev("zzzz"))
    store.delete_device(DeviceId("d0000"))
    rest = [r.id for r in iterator]
    assert first.id == "d0000"
    assert rest[:2] == ["d0001", "d0002"]
    assert len(rest) in (1099, 1100)  # the device added meanwhile may or may not appear


def test_record_seen_sets_last_seen_and_applied_etag(store: Store) -> None:
    store.put_device(dev("d", region="eu"))
    etag = ETag(b"\x01" * 8)
    store.record_seen(DeviceId("d"), now=100.0, applied_etag=etag)
    seen = store.get_device(DeviceId("d"))
    assert (seen.last_seen, seen.applied_etag, seen.groups) == (100.0, etag, {"region": "eu"})
    store.record_seen(DeviceId("d"), now=200.0, applied_etag=None)
    assert store.get_device(DeviceId("d")).applied_etag is None
    with pytest.raises(NotFound):
        store.record_seen(DeviceId("ghost"), now=1.0, applied_etag=None)


def test_calls_after_close_raise_store_error(store: Store) -> None:
    store.put_device(dev("d"))
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError):
        store.get_device(DeviceId("d"))
    with pytest.raises(StoreError):
        store.iter_devices()


# -- records -------------------------------------------------------------------


def test_device_record_freezes_groups_into_a_hashable_mapping() -> None:
    source = {"region": "eu", "function": "meter"}
    record = DeviceRecord(DeviceId("d"), source)
    source["region"] = "us"
    assert isinstance(record.groups, Groups)
    assert record.groups == {"function": "meter", "region": "eu"}
    assert list(record.groups) == ["function", "region"]
    assert hash(record) == hash(
        DeviceRecord(DeviceId("d"), Groups([("region", "eu"), ("function", "meter")]))
    )


@pytest.mark.parametrize("path", ["", "eu/", "/eu", "eu//west"])
def test_device_record_rejects_malformed_group_paths(path: str) -> None:
    with pytest.raises(UsageError, match="region"):
        DeviceRecord(DeviceId("d"), {"region": path})


# -- model-based property ------------------------------------------------------


@dataclass(frozen=True)
class Put:
    records: tuple[DeviceRecord, ...]  # one record: put_device; more: put_devices


@dataclass(frozen=True)
class Delete:
    id: DeviceId


@dataclass(frozen=True)
class Seen:
    id: DeviceId
    now: float


_ops = st.one_of(
    st.builds(Put, st.lists(device_records, min_size=1, max_size=4).map(tuple)),
    st.builds(Delete, device_ids),
    st.builds(Seen, device_ids, st.floats(0, 1e9)),
)


def _apply(store: Store, model: dict[DeviceId, DeviceRecord], op: Put | Delete | Seen) -> None:
    match op:
        case Put(records=(record,)):
            store.put_device(record)
            model[record.id] = record
        case Put(records=records):
            store.put_devices(iter(records))
            model.update((record.id, record) for record in records)
        case Delete(id=id) if id in model:
            store.delete_device(id)
            del model[id]
        case Seen(id=id, now=now) if id in model:
            store.record_seen(id, now=now, applied_etag=None)
            model[id] = replace(model[id], last_seen=now, applied_etag=None)
        case Delete(id=id) | Seen(id=id):
            with pytest.raises(NotFound):
                store.get_device(id)


@pytest.mark.parametrize("factory", ["memory", "sqlite-memory"])
@settings(max_examples=75, deadline=None)
@given(ops=st.lists(_ops, max_size=30))
def test_random_device_operations_leave_store_equal_to_dict_model(
    factory: str, ops: list[Put | Delete | Seen]
) -> None:
    model: dict[DeviceId, DeviceRecord] = {}
    store = FACTORIES[factory](Path("unused"))
    try:
        for op in ops:
            _apply(store, model, op)
        assert list(store.iter_devices()) == [model[id] for id in sorted(model)]
        assert store.count_devices() == len(model)
        for id in [DeviceId(f"d{n}") for n in range(6)]:
            assert store.has_device(id) == (id in model)
        for group in ["eu", "eu/west", "us"]:
            expected = [
                id for id in sorted(model) if in_group(model[id].groups.get("region", "-"), group)
            ]
            found = [r.id for r in store.iter_devices(group=("region", group))]
            assert found == expected
    finally:
        store.close()


# -- OSCORE credentials ---------------------------------------------------------


def test_enroll_hands_out_key_ids_once(store: Store) -> None:
    first = store.enroll("device", "dev-1", b"sealed-1", now=1.0)
    operator = store.enroll("operator", "dev-1", b"sealed-2", now=2.0)  # same name, other role
    assert (first.kid, operator.kid) == (b"\x01", b"\x02")
    assert store.credential(b"\x01") == first
    assert store.active_credential("device", "dev-1") == first
    assert store.active_credential("device", "dev-2") is None
    assert store.credential(b"\x09") is None
    with pytest.raises(StoreConflict, match="already enrolled"):
        store.enroll("device", "dev-1", b"again", now=3.0)
    revoked = store.revoke("device", "dev-1", now=4.0)
    assert revoked == replace(first, revoked_at=4.0)
    assert not revoked.active
    assert store.credential(b"\x01") == revoked
    assert store.revocations() == 1
    with pytest.raises(NotFound):
        store.revoke("device", "dev-1", now=5.0)
    again = store.enroll("device", "dev-1", b"sealed-3", now=6.0)
    assert again.kid == b"\x03"  # never 01 again
    assert store.count_credentials() == 2
    assert store.count_credentials(active=False) == 3


def test_enroll_many_is_atomic(store: Store) -> None:
    records = store.enroll_many([("device", f"d{i}", b"s") for i in range(300)], now=1.0)
    assert [r.kid for r in records[:2]] == [b"\x01", b"\x02"]
    assert records[-1].kid == (300).to_bytes(2, "big")
    with pytest.raises(StoreConflict):
        store.enroll_many([("device", "new", b"s"), ("device", "d7", b"s")], now=2.0)
    assert store.active_credential("device", "new") is None
    with pytest.raises(UsageError, match="unknown role"):
        store.enroll("admin", "root", b"s", now=3.0)


def test_oscore_state_round_trips(store: Store) -> None:
    (record,) = store.enroll_many([("device", "dev-1", b"s")], now=1.0)
    assert store.oscore_state(record.kid) is None
    store.put_oscore_states([(record.kid, OscoreState(16, None))])
    assert store.oscore_state(record.kid) == OscoreState(16, None)
    store.put_oscore_states([(record.kid, OscoreState(40, b"\x00" * 12))])
    assert store.oscore_state(record.kid) == OscoreState(40, b"\x00" * 12)
    store.put_oscore_states([])


def test_sequence_number_reservations_never_overlap_and_keep_the_window(store: Store) -> None:
    kid = b"\x07"
    assert store.reserve_sequence_numbers(kid, 16) == 0  # a new row
    assert store.reserve_sequence_numbers(kid, 32) == 16
    assert store.oscore_state(kid) == OscoreState(48, None)
    store.put_oscore_states([(kid, OscoreState(10, b"\x01" * 12))])  # a stale exact write
    assert store.oscore_state(kid) == OscoreState(48, b"\x01" * 12)
    assert store.reserve_sequence_numbers(kid, 4) == 48
    assert store.oscore_state(kid) == OscoreState(52, b"\x01" * 12)
    assert store.reserve_sequence_numbers(b"\x08", 1) == 0  # per kid
    with pytest.raises(ValueError, match="at least 1"):
        store.reserve_sequence_numbers(kid, 0)


# -- change log ------------------------------------------------------------------


def test_every_write_that_changes_serving_appends_one_change_in_order(store: Store) -> None:
    assert store.last_change() == 0
    assert store.changes_since(0) == []
    content = store.put_blob(b"layer")
    store.append_layer_revision(L("region/eu"), content, parent=None, author="a", message="", now=1)
    store.put_device(dev("d1", region="eu"))
    store.put_devices([dev("d2"), dev("d3")])
    store.put_setting("fleet.hierarchy", b"[]")
    store.enroll("device", "d1", b"sealed", now=1.0)
    store.revoke("device", "d1", now=2.0)
    store.delete_device(DeviceId("d3"))
    changes = store.changes_since(0)
    assert [(c.kind, c.key) for c in changes] == [
        ("layer", "region/eu"),
        ("device", "d1"),
        ("device", "d2"),
        ("device", "d3"),
        ("setting", "fleet.hierarchy"),
        ("revocation", "device/d1"),
        ("device", "d3"),
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert store.last_change() == seqs[-1]


def test_bookkeeping_writes_append_no_change(store: Store) -> None:
    store.put_device(dev("d1"))
    before = store.last_change()
    store.record_seen(DeviceId("d1"), now=5.0, applied_etag=None)
    store.append_telemetry(DeviceId("d1"), b"\x80", now=5.0)
    store.put_setting("local-ack/d1", b"3")
    store.put_blob(b"anything")
    store.put_oscore_states([(b"\x01", OscoreState(16, None))])
    assert store.last_change() == before
    assert store.changes_since(before) == []


def test_changes_since_returns_only_later_changes_up_to_the_limit(store: Store) -> None:
    store.put_devices([dev(f"d{n}") for n in range(5)])
    first, *rest = store.changes_since(0)
    assert [c.key for c in store.changes_since(first.seq)] == [c.key for c in rest]
    assert [c.key for c in store.changes_since(first.seq, limit=2)] == ["d1", "d2"]
    assert store.changes_since(store.last_change()) == []


def test_a_refused_write_appends_no_change(store: Store) -> None:
    content = store.put_blob(b"layer")
    store.append_layer_revision(L("global"), content, parent=None, author="a", message="", now=1)
    before = store.last_change()
    with pytest.raises(StoreConflict):
        store.append_layer_revision(
            L("global"), content, parent=None, author="a", message="", now=2
        )
    with pytest.raises(NotFound):
        store.delete_device(DeviceId("nobody"))
    assert store.last_change() == before


def test_an_open_store_is_writable(store: Store) -> None:
    store.check_writable()
    assert store.last_change() == 0  # the check changes nothing


# -- merges of offline changes ------------------------------------------------


def test_a_merge_is_remembered_per_device_replaced_and_forgotten_with_the_device(
    store: Store,
) -> None:
    device = DeviceId("dev-merge")
    store.put_device(DeviceRecord(device))
    assert store.get_merge(device) is None
    store.put_merge(MergeRecord(device, 3, b"\xa1cack\x03"))
    store.put_merge(MergeRecord(DeviceId("other"), 9, b"\xa0"))
    assert store.get_merge(device) == MergeRecord(device, 3, b"\xa1cack\x03")
    store.put_merge(MergeRecord(device, 7, b"\xa1cack\x07"))
    assert store.get_merge(device) == MergeRecord(device, 7, b"\xa1cack\x07")
    store.delete_device(device)
    assert store.get_merge(device) is None
    assert store.get_merge(DeviceId("other")) == MergeRecord(DeviceId("other"), 9, b"\xa0")


# -- versions devices reverted (issue 15) ---------------------------------------


def test_a_bad_version_is_marked_per_device_replaced_cleared_and_forgotten_with_the_device(
    store: Store,
) -> None:
    device, other = DeviceId("dev-bad"), DeviceId("other")
    store.put_device(DeviceRecord(device))
    bad, good = ETag(b"B" * 8), ETag(b"G" * 8)
    assert store.get_bad_version(device, bad) is None
    first = BadVersion(device, bad, good, "probe-failed", "reachability: refused", 5.0)
    store.put_bad_version(first)
    store.put_bad_version(BadVersion(other, bad, good, "deadline", "", 6.0))
    assert store.get_bad_version(device, bad) == first
    assert store.get_bad_version(device, good) is None
    again = BadVersion(device, bad, good, "reboot", "rebooted once", 9.0)
    store.put_bad_version(again)
    later = BadVersion(device, ETag(b"C" * 8), good, "apply-failed", "file: EACCES", 7.0)
    store.put_bad_version(later)
    assert store.bad_versions(device) == [later, again]  # oldest mark first
    assert store.clear_bad_versions(device, ETag(b"C" * 8)) == 1
    assert store.bad_versions(device) == [again]
    assert store.clear_bad_versions(device, ETag(b"C" * 8)) == 0
    assert store.marked_devices() == [device, other]
    store.delete_device(device)
    assert store.bad_versions(device) == []
    assert store.marked_devices() == [other]
    assert store.clear_bad_versions(other) == 1
    assert store.bad_versions(other) == []
    assert store.marked_devices() == []


def test_putting_or_clearing_a_mark_appends_a_mark_change(store: Store) -> None:
    """A gateway keeps the marked devices in memory: every change to a
    device's marks reaches it through the log, and nothing else does."""
    device = DeviceId("dev-bad")
    bad, good = ETag(b"B" * 8), ETag(b"G" * 8)
    store.put_bad_version(BadVersion(device, bad, good, "reboot", "", 5.0))
    before = store.last_change()
    assert store.clear_bad_versions(device, good) == 0  # nothing went: nothing logged
    assert store.last_change() == before
    assert store.clear_bad_versions(device) == 1
    assert [(c.kind, c.key) for c in store.changes_since(0)] == [
        ("mark", "dev-bad"),
        ("mark", "dev-bad"),
    ]


# -- rollouts (issue 15) ------------------------------------------------------------------


def test_a_rollout_keeps_its_plan_state_cohort_and_history(store: Store) -> None:
    assert store.get_rollout("r1") is None and store.rollouts() == []
    first = RolloutRecord("r1", '{"stages": ["5%"]}', '{"phase": "running"}', 10.0, 10.0)
    store.put_rollout(first)
    store.put_rollout(RolloutRecord("r0", "{}", "{}", 20.0, 20.0))
    assert store.get_rollout("r1") == first
    moved = RolloutRecord("r1", first.plan, '{"phase": "paused"}', 99.0, 30.0)
    store.put_rollout(moved)  # an update keeps when the rollout was created
    assert store.get_rollout("r1") == RolloutRecord("r1", first.plan, moved.state, 10.0, 30.0)
    assert [r.id for r in store.rollouts()] == ["r1", "r0"]
    cohort = [
        RolloutDevice(DeviceId("d2"), "hw|eu|battery|daily", 0, 0.75),
        RolloutDevice(DeviceId("d1"), "hw|eu|mains|weekly", 1, 0.25, "canary", 12.5, '{"a": 1}'),
    ]
    store.put_rollout_devices("r1", cohort)
    assert store.rollout_devices("r1") == sorted(cohort, key=lambda d: d.device)
    offered = RolloutDevice(DeviceId("d2"), "hw|eu|battery|daily", 0, 0.75, "control", 13.0, "{}")
    store.put_rollout_devices("r1", [offered])
    assert store.rollout_devices("r1")[1] == offered
    assert store.rollout_devices("r0") == []
    assert store.append_rollout_entry("r1", at=1.0, kind="decision", entry='{"d": "hold"}') == 1
    assert store.append_rollout_entry("r1", at=2.0, kind="action", entry='{"a": "pause"}') == 2
    assert store.append_rollout_entry("r0", at=3.0, kind="decision", entry="{}") == 1
    assert store.rollout_history("r1") == [
        RolloutEntry(1, 1.0, "decision", '{"d": "hold"}'),
        RolloutEntry(2, 2.0, "action", '{"a": "pause"}'),
    ]
    assert store.rollout_history("nope") == []


def test_the_memory_store_footprint_counts_what_each_table_holds() -> None:
    store = MemoryStore()
    empty = store.footprint()
    assert set(empty.values()) == {0}
    a = store.put_blob(b"layer one")
    store.put_blob(b"layer one")  # the same blob: held once
    store.append_layer_revision(L("g"), a, parent=None, author="x", message="1", now=1.0)
    store.put_versions([(ETag(b"12345678"), b"vv")], now=1.0)
    held = store.footprint()
    assert held["blobs"] == 1 and held["blob_bytes"] == len(b"layer one")
    assert held["layer_revisions"] == 1 and held["change_log"] >= 1
    assert held["versions"] == 1 and held["version_bytes"] == 8 + 2
    store.drop_versions(before=2.0)
    assert store.footprint()["versions"] == 0
