"""One row <-> record conversion for both SQL stores (edgecfg/store/rows.py),
tolerant of either driver's types (sqlite3 gives bytes, psycopg memoryview).
The stores end to end: tests/store/test_store.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.ids import ETag, LayerId
from edgecfg.store import DeviceRecord
from edgecfg.store.base import CredentialRecord, LayerRevision
from edgecfg.store.rows import (
    DEVICE_COLUMNS,
    LAYER_COLUMNS,
    credential_record,
    device_record,
    device_row,
    layer_revision,
)
from tests.strategies import device_records


@given(device_records, st.booleans())
def test_a_device_record_survives_its_row(record: DeviceRecord, as_memoryview: bool) -> None:
    row = device_row(record)
    assert len(row) == len(DEVICE_COLUMNS.split(", "))
    if as_memoryview and row[5] is not None:  # what psycopg hands back for bytea
        row = (*row[:5], memoryview(row[5]))  # pyright: ignore[reportArgumentType]
    back = device_record(row, record.groups.items())
    assert back == record
    assert back.applied_etag is None or type(back.applied_etag) is bytes


def test_a_layer_revision_from_its_row_in_column_order() -> None:
    assert LAYER_COLUMNS.split(", ")[:3] == ["layer", "revision", "parent"]
    row = ("region/eu", 3, 2, memoryview(b"\x01" * 8), "alice", "longer interval", 17)
    assert layer_revision(row) == LayerRevision(
        LayerId("region/eu"), 3, 2, ETag(b"\x01" * 8), "alice", "longer interval", 17.0
    )
    first = layer_revision(("global", 1, None, b"\x02" * 8, "bob", "", 1.5))
    assert (first.parent, first.created_at) == (None, 1.5)


def test_a_credential_from_its_row() -> None:
    row = (memoryview(b"\x07"), "device", "dev-1", memoryview(b"sealed"), 10, None)
    assert credential_record(row) == CredentialRecord(
        b"\x07", "device", "dev-1", b"sealed", 10.0, None
    )
    revoked = credential_record((b"\x08", "operator", "alice", b"s", 1, 2))
    assert (revoked.revoked_at, type(revoked.kid)) == (2.0, bytes)
