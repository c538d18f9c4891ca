"""A version a device reverted is not offered to it again (issue 15), until
the effective configuration changes or an operator clears the mark."""

from __future__ import annotations

import dataclasses

from edgecfg.core.apply import ApplyOutcome, ProbeResult
from edgecfg.core.ids import DeviceId, ETag
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import NotModified, Representation, SyncService
from edgecfg.store import BadVersion
from edgecfg.wire.messages import DeviceReport, StateAnswer
from tests.fleet.test_sync import DEVICE, fresh_fleet, write

OTHER = DeviceId("dev-2")


def reverted(candidate: ETag, previous: ETag) -> ApplyOutcome:
    probe = ProbeResult("reachability", False, "connection refused")
    return ApplyOutcome(
        candidate, previous, "reverted", "probe-failed", "reachability: connection refused",
        (probe,), 10.0, 12.0,
    )  # fmt: skip


def offered() -> tuple[SyncService, ETag, ETag]:
    """A service whose device held ``good`` and was offered ``bad``."""
    fleet = fresh_fleet()
    service = SyncService(fleet)
    write(fleet, {"net.uplink.interval_s": 600}, now=2.0)
    good = service.current(DEVICE).etag
    write(fleet, {"net.uplink.interval_s": 700}, now=3.0)
    bad = service.current(DEVICE).etag
    answer = service.config(DEVICE, base=good)  # the delta is made and cached
    assert isinstance(answer, Representation) and answer.etag == bad  # offered once
    return service, good, bad


def setup() -> tuple[SyncService, ETag, ETag]:
    """A service whose device held ``good``, was offered ``bad``, and reverted it."""
    service, good, bad = offered()
    report = DeviceReport(good, apply=(reverted(bad, good),))
    reply = service.report(DEVICE, report.encode(), now=20.0)
    assert reply is None  # held back: the device is where the gateway wants it
    return service, good, bad


def test_a_reverted_version_is_marked_and_the_device_kept_on_what_it_went_back_to() -> None:
    service, good, bad = setup()
    (mark,) = service.fleet.store.bad_versions(DEVICE)
    assert (mark.etag, mark.reverted_to, mark.reason) == (bad, good, "probe-failed")
    assert mark.detail == "reachability: connection refused"
    assert service.config(DEVICE, base=good) == NotModified(good)
    assert service.served_etag(DEVICE) == good
    full = service.config(DEVICE)  # a device that lost its config gets the good one
    assert isinstance(full, Representation) and full.etag == good


def test_a_newer_version_is_offered_again() -> None:
    service, good, _ = setup()
    write(service.fleet, {"net.uplink.interval_s": 800}, now=30.0)
    answer = service.config(DEVICE, base=good)
    assert isinstance(answer, Representation)
    assert answer.etag == service.fleet.etag(DEVICE) != good


def test_clearing_the_mark_offers_the_version_again() -> None:
    service, good, bad = setup()
    assert service.fleet.store.clear_bad_versions(DEVICE) == 1
    answer = service.config(DEVICE, base=good)
    assert isinstance(answer, Representation) and answer.etag == bad


def test_the_mark_is_per_device() -> None:
    service, _, _ = setup()
    assert service.fleet.store.bad_versions(OTHER) == []


def test_a_report_of_another_version_while_held_back_is_told_it_is_stale() -> None:
    service, good, _ = setup()
    body = service.report(DEVICE, DeviceReport(ETag(b"x" * 8)).encode(), now=40.0)
    assert body is not None
    answer = StateAnswer.decode(body.payload)
    assert (answer.etag, answer.current) == (good, False)


def test_an_unknown_version_to_go_back_to_keeps_the_device_on_what_it_holds() -> None:
    service, good, bad = setup()
    stranger = ETag(b"s" * 8)
    report = DeviceReport(stranger, apply=(reverted(bad, stranger),))
    assert service.report(DEVICE, report.encode(), now=50.0) is None
    assert service.config(DEVICE, base=stranger) == NotModified(stranger)
    assert service.served_etag(DEVICE) == stranger
    assert good != stranger


def test_a_trial_the_agent_merely_stopped_marks_nothing() -> None:
    service, good, _ = setup()
    service.fleet.store.clear_bad_versions(DEVICE)
    stopped = dataclasses.replace(
        reverted(service.fleet.etag(DEVICE), good), reason="interrupted", probes=()
    )
    service.report(DEVICE, DeviceReport(good, apply=(stopped,)).encode(), now=60.0)
    assert service.fleet.store.bad_versions(DEVICE) == []


def test_a_mark_from_another_writer_holds_after_the_next_refresh() -> None:
    """The gateway asks the store only about devices it knows hold a mark;
    a mark put or cleared elsewhere (another gateway, the CLI) arrives
    through the change log, and the device is reported as changed."""
    service, good, bad = offered()
    fleet = service.fleet
    fleet.store.put_bad_version(BadVersion(DEVICE, bad, good, "reboot", "", 4.0))
    changes = fleet.refresh()
    assert DEVICE in changes.devices
    assert service.config(DEVICE, base=good) == NotModified(good)  # not the cached delta
    fleet.store.clear_bad_versions(DEVICE)
    assert DEVICE in fleet.refresh().devices
    again = service.config(DEVICE, base=good)
    assert isinstance(again, Representation) and again.etag == bad


def test_a_fleet_started_on_a_store_with_marks_honours_them() -> None:
    service, good, _ = setup()
    restarted = SyncService(Fleet(service.fleet.store))
    assert restarted.config(DEVICE, base=good) == NotModified(good)
    assert restarted.served_etag(DEVICE) == good


def test_clearing_through_the_fleet_takes_effect_at_once() -> None:
    service, good, bad = setup()
    assert service.fleet.clear_marks(DEVICE) == 1
    assert service.fleet.bad_version(DEVICE, bad) is None
    answer = service.config(DEVICE, base=good)
    assert isinstance(answer, Representation) and answer.etag == bad
