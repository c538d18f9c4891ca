# matplotlib's annotations leave **kwargs untyped; this module owns it (DESIGN
# §2), so only that strict check is relaxed here.
# pyright: reportUnknownMemberType=false
"""A simulation's report folder: ``summary.json`` and PNG plots (matplotlib).

matplotlib comes with the optional ``sim`` extra (and the dev group); without
it the summary is still written and the missing plots are named.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import TYPE_CHECKING, cast

from edgecfg.errors import CommandError
from edgecfg.sim.battery import Fleet, Life, Outcome, deciles
from edgecfg.sim.virtual import DAY_S, RunReport

if TYPE_CHECKING:
    from edgecfg.sim.network import NetworkReport


def _summary(out: Path, summary: dict[str, object]) -> Path:
    """Write ``out/summary.json`` (making ``out``); its path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"{out}: cannot create the report folder: {error.strerror}") from None
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


def write_report(report: RunReport, out: Path) -> list[Path]:
    """Write ``out/summary.json`` and the plots; the files written."""
    summary = report.summary()
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    written = [_summary(out, summary)]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        summary["plots"] = "matplotlib is not installed: install edgecfg[sim] (uv sync does)"
        _summary(out, summary)
        return written
    days = [day for day in range(len(report.days))]
    devices = report.scenario.devices
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(days, [day.bytes / devices for day in report.days], color="#4477aa")
    axis.set_xlabel("day")
    axis.set_ylabel("bytes per device")
    axis.set_title(f"bytes on the wire per device and day ({devices:,} devices)")
    figure.tight_layout()
    figure.savefig(out / "bytes_per_device.png", dpi=100)
    plt.close(figure)
    written.append(out / "bytes_per_device.png")
    waits = sorted(w / 3600 for day in [*report.days, report.final] for w in day.convergence_s)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    if waits:
        axis.plot(waits, [(n + 1) / len(waits) for n in range(len(waits))], color="#228833")
    axis.set_xlabel("hours from a write to the device applying it")
    axis.set_ylabel("share of updates")
    wake_h = report.scenario.wake_every_s / 3600
    axis.set_title(f"convergence (devices wake every {wake_h:g} h)")
    axis.set_xlim(left=0, right=max([*waits, DAY_S / 3600]))
    figure.tight_layout()
    figure.savefig(out / "convergence_cdf.png", dpi=100)
    plt.close(figure)
    written.append(out / "convergence_cdf.png")
    if report.footprints:
        written.append(_plot_longevity(report, out / "longevity.png"))
    return written


LONGEVITY_PANELS = (
    ("rss_mib", "process RSS (MiB)"),
    ("store_bytes_per_device", "store bytes per device"),
    ("layer_revisions", "layer revisions (rows)"),
    ("change_log", "store change log (rows)"),
    ("versions_kept", "served versions kept"),
    ("agent_state_bytes_max", "largest device state (bytes)"),
)
"""The longevity series, one panel each: (Footprint field, axis label)."""


def _plot_longevity(report: RunReport, path: Path) -> Path:
    """One panel per footprint series, over the run's days."""
    import matplotlib.pyplot as plt

    days = [sample.day for sample in report.footprints]
    figure, axes = plt.subplots(2, 3, figsize=(11, 5.5), sharex=True)
    for axis, (name, label) in zip(axes.flat, LONGEVITY_PANELS, strict=True):
        axis.plot(days, [getattr(sample, name) for sample in report.footprints], color="#aa3377")
        axis.set_title(label, fontsize=9)
        axis.set_ylim(bottom=0)
        axis.set_xlabel("day")
    figure.suptitle(
        f"longevity: {report.scenario.devices:,} devices, {report.scenario.days:g} days, "
        f"{report.scenario.writes_per_day:g} writes/day"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_battery(outcome: Outcome, path: str) -> None:
    """The fleet's charge over time, with and without rules: median and p10-p90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = outcome.summary()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for lives, label, colour in (
        (outcome.without, "without rules", "tab:red"),
        (outcome.with_rules, "with the example rules", "tab:blue"),
    ):
        years, median, low, high = _bands(lives, outcome.fleet)
        axis.plot(years, median, color=colour, label=label)
        axis.fill_between(years, low, high, color=colour, alpha=0.15)
    before = cast(dict[str, float], summary["days_to_empty_without"])["median"] / 365.25
    after = cast(dict[str, float], summary["days_to_empty_with_rules"])["median"] / 365.25
    axis.set_title(
        f"{outcome.fleet.devices} NB-IoT sensors, {outcome.fleet.battery_wh:g} Wh "
        f"{outcome.fleet.chemistry}: median life {before:.1f} -> {after:.1f} years "
        f"(+{summary['median_gain_pct']:.0f}%)",
        fontsize=10,
    )
    axis.set_xlabel("years")
    axis.set_ylabel("battery charge, % (median, p10-p90)")
    axis.axhline(20, color="grey", linewidth=0.6, linestyle=":")
    ended = [life.days for life in outcome.with_rules if life.days is not None]
    if ended and len(ended) == len(outcome.with_rules):  # all emptied: show up to the last
        axis.set_xlim(0, max(ended) / 365.25 * 1.1)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bands(
    lives: list[Life], fleet: Fleet
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Charge percentiles across devices at each sampling time (an empty device counts 0)."""
    step_days = fleet.sample_every_days
    count = int(fleet.years * 365.25 // step_days) + 1
    years: list[float] = []
    median: list[float] = []
    low: list[float] = []
    high: list[float] = []
    for k in range(count):
        day = k * step_days
        p10, p50, p90 = deciles([_charge_at(life, day) for life in lives])
        years.append(day / 365.25)
        median.append(p50)
        low.append(p10)
        high.append(p90)
    return years, median, low, high


def _charge_at(life: Life, day: float) -> float:
    last = 100.0
    for when, percent in life.charge:
        if when > day:
            break
        last = percent
    if life.days is not None and day >= life.days:
        return 0.0
    return last


def write_network_report(report: NetworkReport, out: Path) -> list[Path]:
    """``out/summary.json`` and ``out/network.png`` of a real-network run."""
    summary = report.summary()
    written = [_summary(out, summary)]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    figure, (timeline, volume, cdf) = plt.subplots(
        1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [2.2, 1, 1]}
    )
    for start, end in report.link.partitions:
        timeline.axvspan(start, end, color="#cc3311", alpha=0.25, linewidth=0)
    for start, end in report.link.bursts:
        timeline.axvspan(start, end, color="#ee7733", alpha=0.15, linewidth=0)
    for edit in report.edits:
        timeline.axvline(edit.at, color="#4477aa", linewidth=0.8, linestyle="--")
    colours = {"updated": "#228833", "current": "#999999", "partial": "#aa3377"}
    for row, agent in enumerate(report.agents):
        for outcome, colour in colours.items():
            times = [sync.at for sync in agent.syncs if sync.outcome == outcome]
            timeline.scatter(times, [row] * len(times), s=14, color=colour,
                             label=outcome if row == 0 else None)  # fmt: skip
    timeline.set_yticks(range(len(report.agents)))
    timeline.set_yticklabels(
        [f"{a.device} {a.cell.rates.up_kbit}/{a.cell.rates.down_kbit} kbit" for a in report.agents],
        fontsize=7,
    )
    timeline.axvline(report.scenario.seconds, color="black", linewidth=0.8)
    timeline.set_xlabel("seconds (red: outages, orange: loss bursts, dashed: edits)")
    timeline.set_title(
        f"{len(report.agents)} agents, {report.profile.name}: syncs as they finished", fontsize=10
    )
    timeline.legend(fontsize=7, loc="upper right")
    volume.bar(range(len(report.agents)),
               [sum(s.bytes_up + s.bytes_down for s in a.syncs) for a in report.agents],
               color="#4477aa")  # fmt: skip
    volume.set_xlabel("device")
    volume.set_ylabel("bytes on the wire (CoAP payloads and headers)")
    volume.set_title("bytes per device", fontsize=10)
    waits = sorted(w for agent in report.agents for w in agent.convergence_s)
    if waits:
        cdf.plot(waits, [(n + 1) / len(waits) for n in range(len(waits))], color="#228833",
                 drawstyle="steps-post")  # fmt: skip
    cdf.set_xlabel("seconds from an edit to the device applying it")
    cdf.set_ylabel("share of updates")
    cdf.set_xlim(left=0)
    cdf.set_ylim(0, 1.02)
    cdf.set_title("convergence", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "network.png", dpi=90)
    plt.close(figure)
    written.append(out / "network.png")
    return written
