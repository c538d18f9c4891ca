"""The plot of ``edgecfg sim optimize``: battery life and settings by week."""
# pyright: reportUnknownMemberType=false

from __future__ import annotations

from edgecfg.sim.optimize import FRESHNESS_LIMIT_S, Outcome


def plot_optimize(outcome: Outcome, path: str) -> None:
    """Mean projected battery life of the battery devices per week, optimised
    against the unoptimised fleet, and the median settings of the
    poor-coverage battery devices (ImportError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [w.week for w in outcome.weeks]
    figure, (life, settings) = plt.subplots(1, 2, figsize=(10, 3.8))
    life.plot(weeks, [w.life_years for w in outcome.weeks], marker="o", color="#228833",
              label="with the optimizer's canaries")  # fmt: skip
    life.plot(weeks, [w.baseline_life_years for w in outcome.weeks], linestyle="--",
              color="#aa3377", label="unoptimised")  # fmt: skip
    life.set_xlabel("week")
    life.set_ylabel("mean battery life (years)")
    life.set_ylim(bottom=0)
    life.legend(loc="lower right")
    life.set_title(f"battery devices: life +{outcome.battery_life_gain:.0%} "
                   f"({outcome.guardrail_breaches} guardrail breaches)")  # fmt: skip
    settings.plot(weeks, [w.poor_battery_interval_s / 60 for w in outcome.weeks], marker="o",
                  color="#4477aa", label="telemetry interval (min)")  # fmt: skip
    settings.axhline(FRESHNESS_LIMIT_S / 60, color="#bbbbbb", linestyle=":",
                     label="freshness limit (min)")  # fmt: skip
    settings.plot(weeks, [w.poor_timeout_s for w in outcome.weeks], marker="s",
                  color="#ee6677", label="ACK_TIMEOUT (s)")  # fmt: skip
    settings.set_xlabel("week")
    settings.set_title("poor-coverage battery devices: median settings")
    settings.set_ylim(bottom=0)
    settings.legend(loc="center right")
    figure.suptitle(f"edgecfg sim optimize: {outcome.setup.devices:,} devices, "
                    f"seed {outcome.setup.seed}")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
