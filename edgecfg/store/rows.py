"""Rows of the SQL stores (SQLite, PostgreSQL) as records, and records as
rows: one conversion for both, tolerant of either driver's types."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.store.base import CredentialRecord, DeviceRecord, Groups, LayerRevision

DEVICE_COLUMNS = "id, hardware, firmware, agent_version, last_seen, applied_etag"
LAYER_COLUMNS = "layer, revision, parent, content, author, message, created_at"
CREDENTIAL_SELECT = "SELECT kid, role, name, sealed, created_at, revoked_at FROM credentials"


def credential_record(row: Sequence[Any]) -> CredentialRecord:
    kid, role, name, sealed, created, revoked = row
    return CredentialRecord(
        bytes(kid),
        str(role),
        str(name),
        bytes(sealed),
        float(created),
        None if revoked is None else float(revoked),
    )


def device_row(r: DeviceRecord) -> tuple[object, ...]:
    """The ``devices`` row of ``r``, in :data:`DEVICE_COLUMNS` order."""
    etag = None if r.applied_etag is None else bytes(r.applied_etag)
    return (r.id, r.hardware, r.firmware, r.agent_version, r.last_seen, etag)


def device_record(row: Sequence[Any], memberships: Iterable[tuple[str, str]]) -> DeviceRecord:
    return DeviceRecord(
        id=DeviceId(row[0]),
        groups=Groups(memberships),
        hardware=row[1],
        firmware=row[2],
        agent_version=row[3],
        last_seen=row[4],
        applied_etag=None if row[5] is None else ETag(bytes(row[5])),
    )


def layer_revision(row: Sequence[Any]) -> LayerRevision:
    """The record of a ``layer_revisions`` row in :data:`LAYER_COLUMNS` order."""
    layer, revision, parent, content, author, message, created_at = row
    return LayerRevision(
        LayerId(layer),
        int(revision),
        None if parent is None else int(parent),
        ETag(bytes(content)),
        author,
        message,
        float(created_at),
    )
