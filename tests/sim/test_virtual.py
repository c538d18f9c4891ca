"""The virtual-time fleet: deterministic for a seed, converges through loss,
counts divergence independently, and writes its report folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest

from edgecfg.cli.main import main
from edgecfg.errors import UsageError
from edgecfg.sim.virtual import Scenario, VirtualFleet, run
from edgecfg.wire.cbor import Encoded

SMALL = Scenario(devices=40, days=2, seed=3, writes_per_day=12, group_share=0.5)


def _figures(summary: dict[str, object]) -> dict[str, object]:
    """The summary without what the machine decides (wall time, the RSS)."""
    figures = {k: v for k, v in summary.items() if k not in ("wall_s", "events_per_s")}
    samples = cast(list[dict[str, object]], figures.pop("longevity"))
    figures["longevity"] = [{k: v for k, v in day.items() if k != "rss_mib"} for day in samples]
    cpu = ("gateway_us_per_sync", "service_us_per_sync", "us_per_sync")  # CPU time
    days = cast(list[dict[str, object]], figures.pop("per_day"))
    figures["per_day"] = [{k: v for k, v in day.items() if k not in cpu} for day in days]
    work = cast(dict[str, object], figures.pop("gateway_work"))
    figures["gateway_work"] = {k: v for k, v in work.items() if k not in cpu}
    return figures


def test_a_seed_names_one_run() -> None:
    assert _figures(run(SMALL).summary()) == _figures(run(SMALL).summary())
    other = _figures(run(Scenario(devices=40, days=2, seed=4, writes_per_day=12)).summary())
    assert other != _figures(run(SMALL).summary())


def test_every_device_converges_through_a_lossy_link() -> None:
    report = run(Scenario(devices=60, days=3, seed=5, loss=0.3, writes_per_day=20))
    summary = report.summary()
    assert report.divergent == 0 and report.failed_syncs == 0
    assert sum(day.retries for day in report.days) > 0  # the loss was real and retried
    assert sum(day.writes for day in report.days) == 60  # 20 a day for 3 days
    first, later = report.days[0], report.days[1]
    # the first day carries full configs; later days deltas and 2.03s only
    assert first.bytes / 60 > 10 * later.bytes / 60
    convergence = summary["convergence_s"]
    assert isinstance(convergence, dict) and convergence["count"] > 0


def test_the_divergence_check_sees_a_device_on_the_wrong_version() -> None:
    fleet = VirtualFleet(SMALL)
    fleet.run()
    assert fleet.divergent() == 0
    device = next(iter(fleet.devices.values()))
    assert device.held is not None
    device.held = Encoded.trusted({"not": "the config"})
    assert fleet.divergent() == 1


def test_a_daily_device_converges_within_a_day_of_a_write() -> None:
    summary = run(Scenario(devices=30, days=4, seed=9, writes_per_day=6)).summary()
    convergence = summary["convergence_s"]
    assert isinstance(convergence, dict)
    assert convergence["max"] is not None and convergence["max"] <= 86_400.0


@pytest.mark.parametrize(
    "scenario",
    [Scenario(devices=0), Scenario(days=0), Scenario(loss=1.0), Scenario(group_share=2.0)],
)
def test_an_impossible_scenario_is_refused(scenario: Scenario) -> None:
    with pytest.raises(UsageError):
        run(scenario)


def test_edgecfg_sim_writes_its_report_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = ["sim", "--devices", "25", "--days", "2", "--out", str(out), "--loss", "0.2"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("devices", "days", "wall_s", "events", "peak_rss_mib", "divergent_devices"):
        assert key in summary
    assert summary["devices"] == 25 and summary["divergent_devices"] == 0
    assert (out / "bytes_per_device.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "convergence_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "longevity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [day["day"] for day in summary["longevity"]] == [0, 1]
    assert "divergent devices: 0" in capsys.readouterr().out
