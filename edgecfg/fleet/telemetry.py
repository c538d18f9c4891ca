"""Telemetry, the domain service: ingest SenML packs into aggregates, and the
network-quality views the CLI shows (issue 14).

Ingest of a batch of packs reads each device's analysis state (one indexed
row: its counters' last readings and link monitors), folds the records in
with :mod:`edgecfg.core.telemetry`, and writes one
:class:`~edgecfg.store.TelemetryBatch`: the raw packs, aggregate increments
upserted into their buckets, the new states, and the retention cut of the
devices seen.  Nothing it does reads or writes more than the batch's own
devices, groups and cohorts, so its cost per pack does not grow with the
fleet.

Buckets written per numeric record (after :func:`~edgecfg.core.telemetry.series_name`):

- the device's day (kept), and with ``hourly`` its hour (kept for the
  retention window);
- the day of each group the device belongs to (``region/eu/eu-west``; a
  view of ``region/eu`` merges the days of the groups below it, so ingest
  writes one bucket per dimension however deep the hierarchy);
- the day of each config-value cohort: ``path=value`` for every path the
  operator listed in the setting ``telemetry.cohorts`` (a CBOR array of
  dotted paths), with the device's effective value of it;
- for RSRP and SINR readings also a histogram band (``rsrp@-110``), and for
  every degradation the link monitor finds, one reading of ``link_degraded``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from edgecfg.core.ids import DeviceId
from edgecfg.core.telemetry import (
    DAY,
    DEFAULT_CUSUM,
    DEGRADED,
    HOUR,
    LINK_METRICS,
    REGISTRY,
    Aggregate,
    CusumParameters,
    Kind,
    LinkMonitor,
    Measurement,
    Tally,
    band,
    bucket,
    counter_delta,
    monitor_from_list,
    monitor_to_list,
    resolve_time,
    series_name,
)
from edgecfg.errors import UsageError
from edgecfg.store import Store, TelemetryBatch, TelemetryRow
from edgecfg.wire.cbor import decode, dump_record, encode, load_record
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, decode_senml, decode_senml_json, encode_senml

DEFAULT_RETENTION_S: Final = 30 * DAY
"""How long raw packs (and device hours) are kept; rollouts read raw packs
since a stage began (48 h by default), so this must stay well above that."""
COHORTS_SETTING: Final = "telemetry.cohorts"
SETTING_SERIES: Final = "cfg/"
"""The series ``cfg/<dotted path>``: the value a device ran of a tunable
setting (added at ingest by the gateway, or sent by the device)."""
LISTED_DEGRADED: Final = 20
PAGE: Final = 500  # devices whose states one read asks for
NAMES_CACHED: Final = 4096  # (name, unit) -> series, cleared when full


def read_pack(body: bytes, content_format: int | None) -> list[Record]:
    """The resolved records of a SenML pack in content-format 112 (or none
    given) or 110; :class:`~edgecfg.wire.senml.SenmlError` when malformed."""
    if content_format == ContentFormat.SENML_JSON:
        return decode_senml_json(body)
    return decode_senml(body)


@dataclass(frozen=True, slots=True)
class Pack:
    """One accepted pack: ``payload`` is SenML-CBOR (a JSON pack is stored
    re-encoded from its resolved records, so every reader decodes one format)."""

    device: DeviceId
    received: float
    payload: bytes
    records: tuple[Record, ...]
    groups: Mapping[str, str] = field(default_factory=lambda: {})
    cohorts: Mapping[str, str] = field(default_factory=lambda: {})

    @classmethod
    def of(
        cls,
        device: DeviceId,
        body: bytes,
        content_format: int | None,
        *,
        received: float,
        groups: Mapping[str, str] = {},
        cohorts: Mapping[str, str] = {},
    ) -> Pack:
        """Decode and resolve ``body`` (refused with SenmlError when malformed)."""
        records = read_pack(body, content_format)
        payload = body if content_format != ContentFormat.SENML_JSON else encode_senml(records)
        return cls(device, received, payload, tuple(records), groups, cohorts)


@dataclass(slots=True)
class _State:
    """A device's analysis state, stored with cbor2's C codec as is
    (:func:`~edgecfg.wire.cbor.dump_record`): it is the gateway's own, never
    a peer's bytes, and that codec is several times faster than the strict
    decoder meant for what devices send (and than JSON, which states written
    before were in: they are still read)."""

    counters: dict[str, float]
    monitors: dict[str, LinkMonitor]
    trimmed: float = -math.inf
    """The day (its start) this device's raw packs were last cut to retention."""
    day: float = -math.inf
    """The day (its start) whose device aggregates are in ``today``."""
    today: dict[str, list[float]] = field(default_factory=lambda: {})
    """The device's aggregates of ``day`` per series, [count, sum, min, max,
    last, last time]: kept here, in the row a pack writes anyway, and written
    as the device's day buckets when a later day begins (a pack then writes
    one row for the device instead of one per series)."""

    @classmethod
    def decode(cls, data: bytes | None) -> _State:
        if data is None:
            return cls({}, {})
        items = cast(dict[str, Any], json.loads(data) if data[:1] == b"{" else load_record(data))
        counters = {k: float(v) for k, v in items.get("c", {}).items()}
        monitors = {k: monitor_from_list(v) for k, v in items.get("m", {}).items()}
        trimmed, day = items.get("t"), items.get("d")
        return cls(
            counters, monitors, -math.inf if trimmed is None else float(trimmed),
            -math.inf if day is None else float(day), items.get("a", {}),
        )  # fmt: skip

    def encode(self) -> bytes:
        monitors = {k: monitor_to_list(m) for k, m in self.monitors.items()}
        items: dict[str, Any] = {"c": self.counters, "m": monitors}
        if self.trimmed != -math.inf:
            items["t"] = self.trimmed
        if self.today:
            items["d"], items["a"] = self.day, self.today
        return dump_record(items)

    def add(self, name: str, value: float, at: float, day: float) -> bool:
        """Count a reading of ``day`` into ``today``; False for an earlier day
        than the one held (a late reading: the caller writes it as a row)."""
        if day != self.day:
            if day < self.day:
                return False
            self.day, self.today = day, {}  # the caller wrote the finished day
        held = self.today.get(name)
        if held is None:
            self.today[name] = [1, value, value, value, value, at]
            return True
        held[0] += 1
        held[1] += value
        if value < held[2]:
            held[2] = value
        elif value > held[3]:
            held[3] = value
        if at > held[5] or (at == held[5] and value > held[4]):
            held[4], held[5] = value, at
        return True

    def series(self, since: float) -> dict[str, Aggregate]:
        """``today`` as aggregates, if its day is ``since`` or later."""
        if not self.today or self.day < since:
            return {}
        return {name: _aggregate(items) for name, items in self.today.items()}


def _aggregate(items: list[float]) -> Aggregate:
    count, total, low, high, last, at = items
    return Aggregate(int(count), total, low, high, last, at)


def group_keys(groups: Mapping[str, str]) -> list[str]:
    """``dimension/path`` of each group of a membership (its leaf: a view of
    ``region/eu`` merges the buckets of every group below it when read)."""
    return [f"{dimension}/{path}" for dimension, path in sorted(groups.items())]


def cohort_value(value: object) -> str | None:
    """A leaf as cohort text (JSON), None for maps, arrays, bytes and unset."""
    if isinstance(value, bool | int | float | str) or value is None:
        return json.dumps(value, ensure_ascii=False)
    return None


class TelemetryService:
    """Ingest and views over one store (see the module docstring).

    ``hourly`` also keeps device hour buckets within the retention window; it
    is off by default: it doubles the device buckets a pack writes, and the
    raw packs kept over the same window hold the same detail."""

    def __init__(
        self,
        store: Store,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        test: CusumParameters = DEFAULT_CUSUM,
        hourly: bool = False,
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.test = test
        self.hourly = hourly
        self._names: dict[tuple[str, str | None], tuple[str, Measurement | None]] = {}

    def cohort_paths(self) -> list[str]:
        """The dotted paths whose values define cohorts (setting ``telemetry.cohorts``)."""
        raw = self.store.get_setting(COHORTS_SETTING)
        if raw is None:
            return []
        paths = decode(raw)
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise UsageError(f"setting {COHORTS_SETTING}: expected an array of dotted paths")
        return [cast(str, p) for p in paths]

    def set_cohort_paths(self, paths: Sequence[str]) -> None:
        """List the paths whose values define cohorts (from the next pack on)."""
        self.store.put_setting(COHORTS_SETTING, encode(list(paths)))

    # -- ingest --------------------------------------------------------------

    def ingest(self, packs: Sequence[Pack]) -> None:
        """Fold ``packs`` into the store in one transaction."""
        if not packs:
            return
        devices = sorted({pack.device for pack in packs})
        held: dict[DeviceId, bytes] = {}
        for first in range(0, len(devices), PAGE):
            held.update(self.store.telemetry_states(devices[first : first + PAGE]))
        states: dict[DeviceId, _State] = {}
        rows: dict[tuple[str, str, str, float, float], Tally] = {}
        trim: list[DeviceId] = []
        for pack in packs:
            state = states.get(pack.device)
            if state is None:
                state = states[pack.device] = _State.decode(held.get(pack.device))
            self._fold(pack, state, rows)
            day = bucket(pack.received, DAY)
            if state.trimmed < day:  # cut the raw packs to retention once a day
                state.trimmed = day
                trim.append(pack.device)
        newest = max(pack.received for pack in packs)
        self.store.ingest_telemetry(
            TelemetryBatch(
                packs=[(p.device, p.received, p.payload) for p in packs],
                rows=_rows(rows),
                states=[(device, states[device].encode()) for device in sorted(states)],
                keep_after=newest - self.retention_s,
                hourly=HOUR,
                trim=trim,
            )
        )

    def _fold(
        self, pack: Pack, state: _State, rows: dict[tuple[str, str, str, float, float], Tally]
    ) -> None:
        scopes = [("group", key) for key in group_keys(pack.groups)]
        scopes += [("cohort", f"{path}={value}") for path, value in sorted(pack.cohorts.items())]
        device, found = pack.device, rows.get

        def add(name: str, value: float, at: float, *, hourly: bool = self.hourly) -> None:
            day = math.floor(at / DAY) * DAY  # bucket(at, DAY), inlined: the hot loop
            if day > state.day and state.today:  # a new day: the last one becomes rows
                _flush(state, device, rows)
            if not state.add(name, value, at, day):  # a late reading: a row of its own
                slot = ("device", device, name, DAY, day)
                tally = found(slot)
                if tally is None:
                    rows[slot] = Tally(value, at)
                else:
                    tally.add(value, at)
            for scope, key in scopes:
                slot = (scope, key, name, DAY, day)
                tally = found(slot)
                if tally is None:
                    rows[slot] = Tally(value, at)
                    continue
                # Tally.add inlined: three times per reading, the hottest line
                tally.count += 1
                tally.total += value
                if value < tally.low:
                    tally.low = value
                elif value > tally.high:
                    tally.high = value
                if at > tally.last_time or (at == tally.last_time and value > tally.last):
                    tally.last, tally.last_time = value, at
            if hourly:
                slot = ("device", device, name, HOUR, bucket(at, HOUR))
                tally = found(slot)
                if tally is None:
                    rows[slot] = Tally(value, at)
                else:
                    tally.add(value, at)

        received = pack.received
        readings = [(resolve_time(r.time, received), r) for r in pack.records]
        readings.sort(key=_first)  # stable: records of one time stay in pack order
        for at, record in readings:
            value = record.value
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, float | int) or not math.isfinite(value):
                continue  # text and data values stay in the raw pack only
            named = self._names.get((record.name, record.unit))
            if named is None:
                if len(self._names) > NAMES_CACHED:
                    self._names.clear()
                named = self._names[record.name, record.unit] = series_name(
                    record.name, record.unit
                )
            name, known = named
            if known is not None and known.kind is Kind.COUNTER:
                delta = counter_delta(state.counters.get(name), value)
                state.counters[name] = value
                if delta is None:
                    continue
                value = delta
            add(name, value, at)
            histogram = band(name, value)
            if histogram is not None:
                add(histogram, 1.0, at, hourly=False)
            if name in LINK_METRICS:
                monitor = state.monitors.get(name, LinkMonitor())
                after = monitor.observe(value, at, self.test)
                state.monitors[name] = after
                if after.flagged_at == at and monitor.flagged_at != at:
                    add(DEGRADED, 1.0, at, hourly=False)

    def prune(self, *, now: float) -> int:
        """Housekeeping of every device's raw packs past retention; how many went."""
        return self.store.prune_telemetry(before=now - self.retention_s, hourly=HOUR)

    # -- views -----------------------------------------------------------------

    def view(self, target: str, *, since: float) -> TelemetryView:
        """The network-quality view of a device id, or of a group
        ``dimension/path``, over the days from ``since``."""
        if self.store.has_device(DeviceId(target)):
            device = DeviceId(target)
            series = merged(self.store.telemetry_rows("device", key=device, period=DAY,
                                                      since=bucket(since, DAY)))  # fmt: skip
            state = _State.decode(self.store.telemetry_states([device]).get(device))
            for name, held in state.series(bucket(since, DAY)).items():
                found = series.get(name)
                series[name] = held if found is None else found.merge(held)
            links = {name: _link(m) for name, m in sorted(state.monitors.items())}
            return TelemetryView(target, "device", since, series, links, [])
        dimension, _, path = target.partition("/")
        if not path:
            raise UsageError(f"{target}: no such device; a group is dimension/path (region/eu)")
        rows = self.store.telemetry_rows("group", key=target, period=DAY,
                                         since=bucket(since, DAY), below=True)  # fmt: skip
        series = merged(rows)
        flagged: list[str] = []
        members = [record.id for record in self.store.iter_devices(group=(dimension, path))]
        for first in range(0, len(members), PAGE):
            page = self.store.telemetry_states(members[first : first + PAGE])
            for device, raw in page.items():
                state = _State.decode(raw)
                if any(m.flagged_at is not None and m.flagged_at >= since
                       for m in state.monitors.values()):  # fmt: skip
                    flagged.append(device)
        flagged.sort()
        if (
            not series
            and not flagged
            and not self.store.telemetry_rows("group", key=target, period=DAY, below=True)
        ):
            raise UsageError(f"{target}: no such device, and no telemetry of such a group")
        return TelemetryView(target, "group", since, series, {}, flagged)

    def top(self, metric: str, *, since: float, limit: int = 10) -> list[tuple[str, float]]:
        """The devices worst by ``metric`` since ``since``: the sum of a counter
        or count, the mean of a gauge; lowest first where low is worse."""
        series = self.store.telemetry_rows("device", name=metric, period=DAY,
                                           since=bucket(since, DAY))  # fmt: skip
        per_device: dict[str, Aggregate] = {}
        for row in series:
            held = per_device.get(row.key)
            per_device[row.key] = row.aggregate if held is None else held.merge(row.aggregate)
        devices = [record.id for record in self.store.iter_devices()]
        for first in range(0, len(devices), PAGE):  # the days held in the states
            for device, raw in self.store.telemetry_states(devices[first : first + PAGE]).items():
                today = _State.decode(raw).series(bucket(since, DAY)).get(metric)
                if today is not None:
                    held = per_device.get(device)
                    per_device[device] = today if held is None else held.merge(today)
        known = REGISTRY.get(metric)
        summed = (known is not None and known.kind is not Kind.GAUGE) or metric == DEGRADED
        scored = [(key, a.total if summed else a.mean) for key, a in per_device.items()]
        low_first = known is not None and known.low_is_worse
        scored.sort(key=lambda item: (item[1] if low_first else -item[1], item[0]))
        return scored[:limit]


def _first(reading: tuple[float, Record]) -> float:
    return reading[0]


def _flush(
    state: _State, device: DeviceId, rows: dict[tuple[str, str, str, float, float], Tally]
) -> None:
    """Move the day ``state`` holds into ``rows`` as the device's day buckets."""
    for name, items in state.today.items():
        count, total, low, high, last, at = items
        slot = ("device", device, name, DAY, state.day)
        tally = rows.get(slot)
        if tally is None:
            tally = rows[slot] = Tally(low, at)
            tally.count, tally.total, tally.high, tally.last = int(count), total, high, last
        else:
            tally.merge(_aggregate(items))
    state.today = {}


def _rows(rows: dict[tuple[str, str, str, float, float], Tally]) -> list[TelemetryRow]:
    # in key order: two gateways on one PostgreSQL upsert the same group rows,
    # and rows locked in one order cannot deadlock
    return [
        TelemetryRow(scope, key, name, period, start, tally.aggregate())
        for (scope, key, name, period, start), tally in sorted(rows.items())
    ]


def merged(rows: Iterable[TelemetryRow]) -> dict[str, Aggregate]:
    """Rows merged per series name."""
    series: dict[str, Aggregate] = {}
    for row in rows:
        held = series.get(row.name)
        series[row.name] = row.aggregate if held is None else held.merge(row.aggregate)
    return series


@dataclass(frozen=True, slots=True)
class LinkState:
    """The degradation test's verdict on one series of one device."""

    degraded: bool
    changed_at: float | None
    flagged_at: float | None
    before: float | None
    baseline: float | None


def _link(monitor: LinkMonitor) -> LinkState:
    baseline = monitor.mean if monitor.n else None
    return LinkState(monitor.degraded, monitor.changed_at, monitor.flagged_at, monitor.before,
                     baseline)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TelemetryView:
    """What ``edgecfg telemetry show`` prints."""

    target: str
    kind: str
    since: float
    series: Mapping[str, Aggregate]
    links: Mapping[str, LinkState]
    degraded_devices: Sequence[str]

    def total(self, name: str) -> float:
        """The sum of a series (0 without readings)."""
        found = self.series.get(name)
        return 0.0 if found is None else found.total

    def summary(self) -> dict[str, object]:
        """The view as plain data (the CLI's ``--json``)."""
        syncs, failed = self.total("syncs"), self.total("syncs_failed")
        trips = self.total("sync_round_trips")
        link = {
            name: _stats(self.series[name]) for name in ("rsrp", "rsrq", "sinr")
            if name in self.series
        }  # fmt: skip
        bands = {
            name: int(a.total) for name, a in sorted(self.series.items(), key=_band_order)
            if "@" in name
        }  # fmt: skip
        coverage = self.series.get("ce_level")
        battery = {n: _stats(self.series[n]) for n in ("battery", "battery_v") if n in self.series}
        return {
            "target": self.target,
            "kind": self.kind,
            "since": self.since,
            "link": link,
            "distribution": bands,
            "coverage_class": None if coverage is None else {
                "last": coverage.last, "max": coverage.high, "mean": coverage.mean},
            "retransmissions": self.total("retransmissions"),
            "round_trips": trips,
            "retransmissions_per_round_trip": None if trips == 0
            else self.total("retransmissions") / trips,
            "syncs": syncs,
            "sync_success_rate": None if syncs == 0 else max(0.0, 1 - failed / syncs),
            "battery": battery,
            "degraded": {
                name: {"degraded": s.degraded, "changed_at": s.changed_at,
                       "flagged_at": s.flagged_at, "before": s.before, "baseline": s.baseline}
                for name, s in self.links.items()
            } if self.kind == "device" else {
                "count": len(self.degraded_devices),
                "devices": list(self.degraded_devices[:LISTED_DEGRADED]),
                "found": self.total(DEGRADED)},
            "series": {name: _stats(a) for name, a in sorted(self.series.items())
                       if "@" not in name},
        }  # fmt: skip


def _stats(a: Aggregate) -> dict[str, float | int]:
    return {"count": a.count, "sum": a.total, "min": a.low, "mean": a.mean, "max": a.high,
            "last": a.last}  # fmt: skip


def _band_order(item: tuple[str, Aggregate]) -> tuple[str, float]:
    name, _, low = item[0].partition("@")
    try:
        return name, float(low)
    except ValueError:
        return name, math.inf
