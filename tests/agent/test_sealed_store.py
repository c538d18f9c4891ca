"""Opening a state directory: reads create nothing, a wrong key is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecfg.agent.sealed_store import (
    DEV_KEY_FILE,
    KEY_CHECK_FILE,
    DeviceMismatch,
    KeyMismatch,
    LocalState,
    NoState,
    record_device,
    recorded_device,
)
from edgecfg.crypto import derive_store_key
from edgecfg.wire.cbor import Encoded

SECRET = bytes(range(32))
CONFIG = Encoded.of({"net": {"interval_s": 600}})


def written(folder: Path, device: str = "dev-1") -> Path:
    state = LocalState(folder, key=derive_store_key(SECRET, device))
    state.save_config(CONFIG)
    return folder


def test_reading_a_missing_directory_raises_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(NoState, match="no such directory"):
        LocalState.open_existing(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
    with pytest.raises(NoState, match="none of the files an agent writes"):
        LocalState.open_existing(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_reading_with_the_right_key_sees_the_config(tmp_path: Path) -> None:
    folder = written(tmp_path / "s")
    before = sorted(folder.rglob("*"))
    state = LocalState.open_existing(folder, key=derive_store_key(SECRET, "dev-1"))
    held = state.load_config()
    assert held is not None and held.etag == CONFIG.etag
    assert sorted(folder.rglob("*")) == before


@pytest.mark.parametrize("legacy", [False, True])
def test_a_key_for_another_device_is_refused_not_read_as_empty(
    tmp_path: Path, legacy: bool
) -> None:
    folder = written(tmp_path / "s")
    if legacy:  # a directory written before key.check existed: the slots tell
        (folder / KEY_CHECK_FILE).unlink()
    with pytest.raises(KeyMismatch, match="does not open"):
        LocalState.open_existing(folder, key=derive_store_key(SECRET, "agent"))


def test_a_store_sealed_with_a_secret_needs_it(tmp_path: Path) -> None:
    folder = written(tmp_path / "s")
    with pytest.raises(KeyMismatch, match=f"no {DEV_KEY_FILE} here"):
        LocalState.open_existing(folder)
    assert not (folder / DEV_KEY_FILE).exists()


def test_the_agent_refuses_to_run_on_a_store_its_key_does_not_open(tmp_path: Path) -> None:
    folder = written(tmp_path / "s")
    with pytest.raises(KeyMismatch):
        LocalState(folder, key=derive_store_key(SECRET, "dev-2"))


def test_a_damaged_store_still_opens_for_a_resync(tmp_path: Path) -> None:
    folder = written(tmp_path / "s")
    for slot in (folder / "store").iterdir():
        data = slot.read_bytes()
        slot.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the GCM tag no longer fits
    state = LocalState(folder, key=derive_store_key(SECRET, "dev-1"))  # key.check opens
    assert state.load_config() is None  # the next sync fetches the full config


def test_a_directory_belongs_to_one_device(tmp_path: Path) -> None:
    assert recorded_device(tmp_path / "s") is None
    record_device(tmp_path / "s", "dev-1")
    record_device(tmp_path / "s", "dev-1")  # again: fine
    assert recorded_device(tmp_path / "s") == "dev-1"
    with pytest.raises(DeviceMismatch, match="belongs to device dev-1, not dev-2"):
        record_device(tmp_path / "s", "dev-2")
