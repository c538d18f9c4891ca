"""The MQTT bridge's on-disk outbox: bounded, ordered, at least once."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecfg.errors import StoreError
from edgecfg.store.outbox import Outbox


def test_messages_come_out_in_order_until_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_messages=10)
    for n in range(3):
        outbox.put(f"t/{n}", bytes([n]))
    first = outbox.peek(2)
    assert [(m.topic, m.payload) for m in first] == [("t/0", b"\x00"), ("t/1", b"\x01")]
    assert outbox.peek(2) == first  # peeking removes nothing
    outbox.ack([m.id for m in first])
    assert [m.topic for m in outbox.peek(10)] == ["t/2"]
    assert len(outbox) == 1
    outbox.close()


def test_beyond_the_bound_the_oldest_are_dropped_and_counted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_messages=3)
    for n in range(7):
        outbox.put("t", bytes([n]))
    assert [m.payload for m in outbox.peek(10)] == [b"\x04", b"\x05", b"\x06"]
    assert outbox.dropped == 4
    outbox.close()


def test_queued_messages_and_the_drop_count_survive_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_messages=2)
    for n in range(3):
        outbox.put("t", bytes([n]))
    outbox.close()
    again = Outbox(tmp_path / "o.db", max_messages=2)
    assert [m.payload for m in again.peek(10)] == [b"\x01", b"\x02"]
    assert again.dropped == 1
    again.close()


def test_a_bad_bound_or_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="must be at least 1"):
        Outbox(tmp_path / "o.db", max_messages=0)
    (tmp_path / "junk").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="outbox"):
        Outbox(tmp_path / "junk", max_messages=5)
