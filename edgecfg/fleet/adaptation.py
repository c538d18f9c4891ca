"""What the gateway keeps of each device's local adaptation layer (issue 14).

A device's rules adapt its settings offline (:mod:`edgecfg.core.rules`);
its next state report carries the layer (``adapt``), which the gateway keeps
per device (a per-device setting ``adaptation/{dev}``: bookkeeping, so
writing it appends nothing to the change log) and shows in ``explain``:
which rule set which value, since when, and the reading that triggered it.
The layer is the device's own: it never enters the served configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edgecfg.core.ids import DeviceId
from edgecfg.core.path import Path
from edgecfg.core.rules import Adaptation, Adapted, Refused
from edgecfg.core.tree import is_map
from edgecfg.errors import PeerError
from edgecfg.store.base import Store
from edgecfg.wire.adaptation import AdaptationError, adaptation_from_value, adaptation_to_value
from edgecfg.wire.cbor import decode, encode

SETTING_PREFIX: Final = "adaptation/"


@dataclass(frozen=True, slots=True)
class ReportedAdaptation:
    """A device's adaptation layer as its report of ``reported_at`` had it."""

    adaptation: Adaptation
    reported_at: float

    def at(self, paths: Sequence[Path]) -> tuple[list[Adapted], list[Refused]]:
        """The adapted values and refusals at ``paths`` (all of them when empty)."""
        wanted = set(paths)
        values = [a for a in self.adaptation.values if not wanted or a.path in wanted]
        refused = [r for r in self.adaptation.refused if not wanted or r.path in wanted]
        return values, refused


def record_adaptation(
    store: Store, device: DeviceId, adaptation: Adaptation, *, now: float
) -> None:
    """Keep the layer a device reported at ``now`` (replacing the earlier one)."""
    body = encode({"at": now, "adapt": adaptation_to_value(adaptation)})
    store.put_setting(SETTING_PREFIX + device, body)


def reported_adaptation(store: Store, device: DeviceId) -> ReportedAdaptation | None:
    """The layer the device last reported, or None (never, or unreadable)."""
    body = store.get_setting(SETTING_PREFIX + device)
    if body is None:
        return None
    try:
        record = decode(body)
        at = record.get("at") if is_map(record) else None
        if not is_map(record) or not isinstance(at, int | float) or isinstance(at, bool):
            return None
        return ReportedAdaptation(adaptation_from_value(record.get("adapt")), float(at))
    except (PeerError, AdaptationError):
        return None
