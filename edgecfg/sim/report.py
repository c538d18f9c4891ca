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

from edgecfg.errors import CommandError
from edgecfg.sim.virtual import DAY_S, RunReport


def write_report(report: RunReport, out: Path) -> list[Path]:
    """Write ``out/summary.json`` and the plots; the files written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"{out}: cannot create the report folder: {error.strerror}") from None
    summary = report.summary()
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    written = [out / "summary.json"]
    written[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        summary["plots"] = "matplotlib is not installed: install edgecfg[sim] (uv sync does)"
        written[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
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
