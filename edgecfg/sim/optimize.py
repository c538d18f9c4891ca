"""``edgecfg sim optimize``: a fleet that starts on poor settings, and the
optimizer that has to find better ones through canaries.

The fleet (numpy arrays, one day a step) has NB-IoT and LTE-M devices in
two regions, on battery or mains, in good or poor coverage.  They start on
settings that are poor for their conditions: a 5-minute telemetry interval
on poor-coverage battery devices (10 minutes on good coverage) and the
RFC 7252 ACK_TIMEOUT of 2 s on links whose round trip is up to 10 s.

The ground truth is built from the energy model (:mod:`edgecfg.core.energy`:
each report is a radio wake, a round trip and its bytes; every spurious
retransmission, sent because ACK_TIMEOUT expired before the answer could
arrive, another round trip and its bytes; a lost message keeps the receiver
on for ACK_TIMEOUT) and is hidden from the optimizer, which sees only the
daily aggregates (drain with gauge noise, errors as counts, data age) of
each device and the settings each ran.  Each device also has its own
efficiency (a lognormal factor) and all share a cold-weather cycle, so only
a within-device, trend-adjusted comparison finds the truth.

Weekly cycle: the last 28 days of aggregates -> :func:`~edgecfg.core.optimize.analyse`
-> :func:`~edgecfg.core.optimize.propose` -> trials run for a week on at
most 10 % of a stratum; adoptions run as canary rollouts judged every day
by the rollout engine's gates (:func:`edgecfg.core.rollout.decide`) with a
control arm; only a rollout that completes changes its stratum.  An abort,
a rollback or an escalation leaves the stratum as it was.

``aa=True`` makes an A/A fleet: every metric is drawn from the devices'
*initial* settings whatever they run, so no setting has an effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgecfg.core.energy import MONITOR_W, PROFILES
from edgecfg.core.objectives import Objective, parse_objectives
from edgecfg.core.optimize import Analysis, Panel, Proposal, Search, Tunable, analyse, propose
from edgecfg.core.rollout import (
    Decision,
    Evidence,
    Phase,
    Plan,
    Snapshot,
    State,
    Stratum,
    assign,
    decide,
)
from edgecfg.core.sequential import Arms, Moments

Floats = NDArray[np.float64]

INTERVAL: Final = "net.uplink.interval_s"
TIMEOUT: Final = "net.coap.ack_timeout_s"
TUNABLES: Final[Mapping[str, Tunable]] = {
    INTERVAL: Tunable(INTERVAL, 300.0, 3600.0, 300.0),
    TIMEOUT: Tunable(TIMEOUT, 1.0, 30.0, None),
}
FRESHNESS_LIMIT_S: Final = 900.0
OBJECTIVES: Final = {
    "objective": [
        {
            "name": "battery-life",
            "segment": "power/battery",
            "minimise": "battery_drain",
            "settings": [INTERVAL, TIMEOUT],
            "constraints": [f"{INTERVAL} <= {FRESHNESS_LIMIT_S:g}", "errors not worse than +10%"],
            "guardrails": ["battery_drain", "errors"],
        },
        {
            "name": "mains-errors",
            "segment": "power/mains",
            "minimise": "errors",
            "settings": [TIMEOUT],
            "constraints": ["battery_drain not worse than +10%"],
            "guardrails": ["errors"],
        },
    ]
}
"""The demo's objectives (the same as fixtures/optimize/objectives.toml)."""

BATTERY_J: Final = 68.0 * 3600
"""One Li-SOCl2 D cell (3.6 V, 19 Ah: ~68 Wh)."""
SENSING_J: Final = 2.0
"""A day's sensing and housekeeping on the MCU, joules."""
UP_BYTES: Final = 120.0
DOWN_BYTES: Final = 20.0
WINDOW_DAYS: Final = 28
# link: (energy profile, round-trip time s, message loss)
LINKS: Final[Mapping[tuple[str, str], tuple[str, float, float]]] = {
    ("nbiot", "good"): ("nb-iot/mcl144", 1.6, 0.02),
    ("nbiot", "poor"): ("nb-iot/mcl164", 10.0, 0.12),
    ("ltem", "good"): ("lte-m/mode-a", 0.4, 0.02),
    ("ltem", "poor"): ("lte-m/mode-b", 2.0, 0.08),
}
HARDWARE: Final = ("nbiot", "ltem")
REGIONS: Final = ("eu", "us")
POWER: Final = ("battery", "mains")
LINK_QUALITY: Final = ("good", "poor")


@dataclass(frozen=True, slots=True)
class Setup:
    """One run: fleet size, weeks, seed, A/A or not."""

    devices: int = 6400
    weeks: int = 12
    seed: int = 1
    aa: bool = False
    search: Search = field(default_factory=Search)


@dataclass(slots=True)
class Fleet:
    """The simulated fleet: attributes and current settings per device."""

    hardware: NDArray[np.int64]
    region: NDArray[np.int64]
    power: NDArray[np.int64]
    link: NDArray[np.int64]
    interval: Floats
    timeout: Floats
    efficiency: Floats
    rtt: Floats = field(init=False)
    loss: Floats = field(init=False)
    wake_j: Floats = field(init=False)
    round_trip_j: Floats = field(init=False)
    byte_j: Floats = field(init=False)
    floor_w: Floats = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.hardware)
        self.rtt, self.loss = np.zeros(n), np.zeros(n)
        self.wake_j, self.round_trip_j = np.zeros(n), np.zeros(n)
        self.byte_j, self.floor_w = np.zeros(n), np.zeros(n)
        for (hw, quality), (name, rtt, loss) in LINKS.items():
            at = (self.hardware == HARDWARE.index(hw)) & (self.link == LINK_QUALITY.index(quality))
            profile = PROFILES[name]
            self.rtt[at], self.loss[at] = rtt, loss
            self.wake_j[at], self.round_trip_j[at] = profile.wake_j, profile.round_trip_j
            self.byte_j[at] = (
                profile.up_j_per_byte * UP_BYTES + profile.down_j_per_byte * DOWN_BYTES
            )
            self.floor_w[at] = profile.floor_w

    @property
    def strata(self) -> NDArray[np.int64]:
        return ((self.hardware * 2 + self.region) * 2 + self.power) * 2 + self.link


def stratum_keys() -> tuple[str, ...]:
    """Every stratum key, in the order of :attr:`Fleet.strata`."""
    return tuple(
        f"{hw}|{region}|{power}|{link}"
        for hw in HARDWARE
        for region in REGIONS
        for power in POWER
        for link in LINK_QUALITY
    )


def make_fleet(devices: int, rng: np.random.Generator) -> Fleet:
    """A fleet on poor initial settings (see the module docstring)."""
    hardware = rng.choice(2, devices, p=[0.6, 0.4]).astype(np.int64)
    region = rng.choice(2, devices).astype(np.int64)
    power = rng.choice(2, devices, p=[0.75, 0.25]).astype(np.int64)
    link = rng.choice(2, devices, p=[0.55, 0.45]).astype(np.int64)
    battery = power == 0
    interval = np.where(battery & (link == 1), 300.0, np.where(battery, 600.0, 300.0))
    return Fleet(hardware, region, power, link, interval, np.full(devices, 2.0),
                 rng.lognormal(0.0, 0.2, devices))  # fmt: skip


def spurious(rtt: Floats, timeout: Floats) -> Floats:
    """Retransmissions sent before the answer can arrive: ACK_TIMEOUT doubles
    each time (RFC 7252 §4.2), so k of them go out while
    ``timeout * (2**k - 1) < rtt`` (smoothed, at most MAX_RETRANSMIT = 4)."""
    return np.clip(np.log2(rtt / timeout + 1.0) - 1.0, 0.0, 4.0)


def truth(fleet: Fleet, interval: Floats, timeout: Floats) -> dict[str, Floats]:
    """The expected daily metrics of every device at these settings (hidden
    from the optimizer): joules, battery drain (% a day, 0 on mains), errors a
    day, data age (s)."""
    reports = 86_400.0 / interval
    retransmits = spurious(fleet.rtt, timeout)
    per_report = (
        fleet.wake_j
        + fleet.round_trip_j * (1.0 + retransmits + fleet.loss)
        + fleet.byte_j * (1.0 + retransmits + fleet.loss)
        + fleet.loss * timeout * MONITOR_W * 4  # the receiver kept on until the timeout fires
    )
    joules = (reports * per_report + fleet.floor_w * 86_400.0 + SENSING_J) * fleet.efficiency
    battery = fleet.power == 0
    return {
        "joules": joules,
        "battery_drain": np.where(battery, joules / BATTERY_J * 100.0, 0.0),
        "errors": reports * (0.3 * fleet.loss + 0.02 * retransmits),
        "freshness_s": interval / 2.0 + fleet.rtt * (1.0 + retransmits),
    }


def observe(
    fleet: Fleet, expected: Mapping[str, Floats], day: int, rng: np.random.Generator
) -> dict[str, Floats]:
    """One day's aggregates: gauge noise on drain, Poisson errors, a cold cycle."""
    cold = 1.0 + 0.08 * math.sin(2 * math.pi * day / 30.0)
    n = len(fleet.hardware)
    return {
        "battery_drain": expected["battery_drain"] * cold * rng.normal(1.0, 0.08, n).clip(0.5),
        "errors": rng.poisson(expected["errors"] * cold).astype(np.float64),
        "freshness_s": expected["freshness_s"] * rng.normal(1.0, 0.03, n).clip(0.5),
    }


@dataclass(slots=True)
class Rollout:
    """An adoption in flight: its plan, state, arms and evidence so far."""

    proposal: Proposal
    plan: Plan
    members: NDArray[np.int64]
    quantile: Floats
    started_day: int
    state: State = field(default_factory=State)
    sums: dict[str, dict[int, list[float]]] = field(
        default_factory=dict[str, dict[int, list[float]]]
    )


@dataclass(slots=True)
class Week:
    """One row of the run's record."""

    week: int
    life_years: float
    baseline_life_years: float
    poor_battery_interval_s: float
    poor_timeout_s: float
    trials: int
    adoptions_proposed: int
    rollouts_passed: int
    rollouts_stopped: int


@dataclass(slots=True)
class Outcome:
    """A run's record and summary figures."""

    setup: Setup
    weeks: list[Week]
    battery_life_gain: float
    median_device_gain: float
    freshness_ok: bool
    max_interval_s: float
    guardrail_breaches: int
    adoptions_proposed: int
    rollouts_passed: int
    rollouts_stopped: int
    trials: int
    changes: list[dict[str, object]]

    def summary(self) -> dict[str, object]:
        return {
            "devices": self.setup.devices, "weeks": self.setup.weeks, "seed": self.setup.seed,
            "aa": self.setup.aa, "battery_life_gain": round(self.battery_life_gain, 4),
            "median_device_gain": round(self.median_device_gain, 4),
            "freshness_ok": self.freshness_ok, "freshness_limit_s": FRESHNESS_LIMIT_S,
            "max_interval_s": self.max_interval_s,
            "guardrail_breaches": self.guardrail_breaches,
            "adoptions_proposed": self.adoptions_proposed,
            "rollouts_passed": self.rollouts_passed, "rollouts_stopped": self.rollouts_stopped,
            "trials": self.trials, "changes": self.changes,
            "weekly": [
                {"week": w.week, "life_years": round(w.life_years, 3),
                 "baseline_life_years": round(w.baseline_life_years, 3),
                 "poor_battery_interval_s": w.poor_battery_interval_s,
                 "poor_timeout_s": round(w.poor_timeout_s, 2), "trials": w.trials,
                 "adoptions_proposed": w.adoptions_proposed,
                 "rollouts_passed": w.rollouts_passed, "rollouts_stopped": w.rollouts_stopped}
                for w in self.weeks
            ],
        }  # fmt: skip


def objectives() -> tuple[Objective, ...]:
    return parse_objectives(OBJECTIVES, tuple(TUNABLES))


def _mean(values: Floats) -> float:
    """The mean, 0 for no values (a fleet without battery devices)."""
    return float(np.mean(values)) if len(values) else 0.0


def _median(values: Floats) -> float:
    return float(np.median(values)) if len(values) else 0.0


def _life_years(joules: Floats, battery: NDArray[np.bool_]) -> Floats:
    return BATTERY_J / joules[battery] / 365.25


def run(setup: Setup, progress: Callable[[float], None] | None = None) -> Outcome:
    """One run of ``setup.weeks`` weeks (see the module docstring)."""
    rng = np.random.default_rng(setup.seed)
    search_rng = np.random.default_rng([setup.seed, 17])
    fleet = make_fleet(setup.devices, rng)
    initial = (fleet.interval.copy(), fleet.timeout.copy())
    initial_truth = truth(fleet, *initial)
    battery = fleet.power == 0
    base_life = _life_years(initial_truth["joules"], battery)
    keys = stratum_keys()
    strata = fleet.strata
    goals = objectives()
    n, days = setup.devices, setup.weeks * 7
    history: dict[str, list[Floats]] = {m: [] for m in ("battery_drain", "errors", "freshness_s")}
    settings_history: dict[str, list[Floats]] = {INTERVAL: [], TIMEOUT: []}
    trial_until = np.full(n, -1)
    rollouts: list[Rollout] = []
    weeks: list[Week] = []
    changes: list[dict[str, object]] = []
    breaches = proposed = passed = stopped = trials = 0
    max_interval = float(fleet.interval.max())
    week_counts = [0, 0, 0, 0]
    for day in range(days):
        if day % 7 == 0 and day > 0:
            panel = _panel(history, settings_history, strata, keys)
            analysis = analyse(panel, tuple(TUNABLES))
            busy = {keys[s]: int(np.sum((trial_until >= day) & (strata == s)))
                    for s in range(len(keys))}  # fmt: skip
            for rollout in rollouts:
                busy[rollout.proposal.stratum] = analysis.sizes[rollout.proposal.stratum]
            flight = frozenset(
                (r.proposal.stratum, setting) for r in rollouts for setting in TUNABLES
            )
            decided = propose(goals, TUNABLES, analysis, search_rng, busy=busy,
                              in_flight=flight, search=setup.search,
                              round_id=f"w{day // 7}")  # fmt: skip
            for proposal in decided.proposals:
                code = keys.index(proposal.stratum)
                if proposal.kind == "trial":
                    trials += 1
                    week_counts[0] += 1
                    _start_trial(fleet, proposal, in_stratum=strata == code,
                                 trial_until=trial_until, day=day, rng=rng)  # fmt: skip
                else:
                    proposed += 1
                    week_counts[1] += 1
                    rollouts.append(_start_rollout(proposal, strata, code, fleet, day))
        # trials end: back to the stratum's baseline
        ending = trial_until == day - 1
        if ending.any():
            _end_trials(fleet, ending, strata)
        settings_now = initial if setup.aa else (fleet.interval, fleet.timeout)
        expected = truth(fleet, *settings_now)
        seen = observe(fleet, expected, day, rng)
        for metric, values in seen.items():
            history[metric].append(values)
        settings_history[INTERVAL].append(fleet.interval.copy())
        settings_history[TIMEOUT].append(fleet.timeout.copy())
        max_interval = max(max_interval, float(fleet.interval.max()))
        for rollout in list(rollouts):
            done = _step_rollout(rollout, fleet, seen, day)
            if done is None:
                continue
            rollouts.remove(rollout)
            if done:
                passed += 1
                week_counts[2] += 1
                breaches += _breach(rollout, fleet, initial, setup.aa)
                changes.append({
                    "week": day // 7, "stratum": rollout.proposal.stratum,
                    "setting": rollout.proposal.setting, "from": rollout.proposal.baseline,
                    "to": rollout.proposal.value, "objective": rollout.proposal.objective,
                })  # fmt: skip
            else:
                stopped += 1
                week_counts[3] += 1
        if day % 7 == 6:
            now = truth(fleet, fleet.interval, fleet.timeout)
            poor = battery & (fleet.link == 1)
            weeks.append(Week(
                day // 7 + 1, _mean(_life_years(now["joules"], battery)), _mean(base_life),
                _median(fleet.interval[poor]), _median(fleet.timeout[poor]), *week_counts,
            ))  # fmt: skip
            week_counts = [0, 0, 0, 0]
            if progress is not None:
                progress((day + 1) / days)
    # the settings the fleet keeps: trials and canaries in flight go back
    _end_trials(fleet, trial_until >= 0, strata)
    for rollout in rollouts:
        _revert(rollout, fleet)
    final = truth(fleet, fleet.interval, fleet.timeout)
    life = _life_years(final["joules"], battery)
    if setup.aa:
        life = base_life
    return Outcome(
        setup, weeks, _mean(life) / _mean(base_life) - 1.0 if len(life) else 0.0,
        _median(life / base_life - 1.0), max_interval <= FRESHNESS_LIMIT_S,
        max_interval, breaches, proposed, passed, stopped, trials, changes,
    )  # fmt: skip


def _panel(
    history: Mapping[str, list[Floats]], settings: Mapping[str, list[Floats]],
    strata: NDArray[np.int64], keys: tuple[str, ...],
) -> Panel:  # fmt: skip
    """The last :data:`WINDOW_DAYS` days as a panel (what the gateway's daily aggregates hold)."""
    days = len(next(iter(history.values())))
    first = max(0, days - WINDOW_DAYS)
    n = len(strata)
    span = days - first
    device = np.tile(np.arange(n, dtype=np.int64), span)
    day = np.repeat(np.arange(first, days, dtype=np.int64), n)
    return Panel(
        device, day,
        {name: np.concatenate(rows[first:]) for name, rows in settings.items()},
        {name: np.concatenate(rows[first:]) for name, rows in history.items()},
        strata, keys,
    )  # fmt: skip


def _column(fleet: Fleet, setting: str) -> Floats:
    return fleet.interval if setting == INTERVAL else fleet.timeout


def _start_trial(
    fleet: Fleet, proposal: Proposal, *, in_stratum: NDArray[np.bool_],
    trial_until: NDArray[np.int64], day: int, rng: np.random.Generator,
) -> None:  # fmt: skip
    """``proposal.devices`` devices of the stratum, not in a trial, run the value for a week."""
    free = np.flatnonzero(in_stratum & (trial_until < day))
    if len(free) == 0:
        return
    chosen = rng.choice(free, min(proposal.devices, len(free)), replace=False)
    _column(fleet, proposal.setting)[chosen] = proposal.value
    trial_until[chosen] = day + 6


def _end_trials(fleet: Fleet, ending: NDArray[np.bool_], strata: NDArray[np.int64]) -> None:
    """Devices whose trial ended go back to their stratum's baseline (its most common value)."""
    for code in np.unique(strata[ending]):
        members = strata == code
        back = ending & members
        for column in (fleet.interval, fleet.timeout):
            values, counts = np.unique(column[members & ~ending], return_counts=True)
            if len(values):
                column[back] = values[int(np.argmax(counts))]


def _start_rollout(
    proposal: Proposal, strata: NDArray[np.int64], code: int, fleet: Fleet, day: int
) -> Rollout:
    members = np.flatnonzero(strata == code)
    stratum = Stratum(HARDWARE[int(fleet.hardware[members[0]])],
                      REGIONS[int(fleet.region[members[0]])],
                      POWER[int(fleet.power[members[0]])], "daily")  # fmt: skip
    assigned = assign(proposal.plan, ((str(int(m)), stratum) for m in members))
    quantile = np.array([assigned[str(int(m))].quantile for m in members])
    return Rollout(proposal, proposal.plan, members, quantile, day)


def _arms(rollout: Rollout) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The canary and control members while the rollout's stage runs (the
    assignment rule of :class:`edgecfg.core.rollout.Assignment`)."""
    share = rollout.plan.stages[rollout.state.stage].share
    canary = rollout.members[rollout.quantile < share]
    control = rollout.members[(1 - rollout.quantile < share) & ~(rollout.quantile < share)]
    return canary, control


def _step_rollout(
    rollout: Rollout, fleet: Fleet, seen: Mapping[str, Floats], day: int
) -> bool | None:
    """One day of an adoption rollout: treat the canary, add the day's
    evidence, ask the gates.  True: completed; False: stopped; None: running."""
    proposal = rollout.proposal
    column = _column(fleet, proposal.setting)
    canary, control = _arms(rollout)
    column[canary] = proposal.value
    for guardrail in rollout.plan.guardrails:
        sums = rollout.sums.setdefault(guardrail.name, {})
        for arm, devices in ((0, canary), (1, control)):
            for device in devices.tolist():
                entry = sums.setdefault(device * 2 + arm, [0.0, 0.0])
                entry[0] += 1.0
                entry[1] += float(seen[guardrail.name][device])
    now_h = (day - rollout.started_day + 1) * 24.0
    evidence: dict[str, Evidence] = {}
    for guardrail in rollout.plan.guardrails:
        tally = {0: Moments(), 1: Moments()}
        for key, (days_seen, total) in rollout.sums.get(guardrail.name, {}).items():
            tally[key % 2] = tally[key % 2].add(total / days_seen, days_seen)
        evidence[guardrail.name] = Evidence({proposal.stratum: Arms(tally[0], tally[1])},
                                            now_h, now_h)  # fmt: skip
    snapshot = Snapshot(now_h, rollout.state, evidence, len(canary), len(canary), 0, 24.0)
    outcome = decide(rollout.plan, snapshot)
    rollout.state = outcome.state
    if outcome.decision in (Decision.ABORT, Decision.ROLLBACK, Decision.ESCALATE):
        _revert(rollout, fleet)
        return False
    if outcome.state.phase is Phase.COMPLETE:
        column[rollout.members] = proposal.value
        return True
    return None


def _revert(rollout: Rollout, fleet: Fleet) -> None:
    _column(fleet, rollout.proposal.setting)[rollout.members] = rollout.proposal.baseline


def _breach(rollout: Rollout, fleet: Fleet, initial: tuple[Floats, Floats], aa: bool) -> int:
    """1 if the change, by the ground truth, made a guardrail of its plan
    worse than its margin in its stratum, or broke the freshness limit."""
    members = rollout.members
    setting = rollout.proposal.setting
    after = truth(fleet, fleet.interval, fleet.timeout)
    before_columns = [fleet.interval.copy(), fleet.timeout.copy()]
    before_columns[0 if setting == INTERVAL else 1][members] = rollout.proposal.baseline
    before = truth(fleet, *before_columns)
    if aa:
        after = before = truth(fleet, *initial)
    if float(fleet.interval[members].max()) > FRESHNESS_LIMIT_S:
        return 1
    for guardrail in rollout.plan.guardrails:
        worse = float(np.mean(after[guardrail.name][members] - before[guardrail.name][members]))
        if worse > guardrail.margin:
            return 1
    return 0


def analysis_of(setup: Setup) -> Analysis:
    """The first week's analysis of a fresh fleet (for tests and the bench)."""
    rng = np.random.default_rng(setup.seed)
    fleet = make_fleet(setup.devices, rng)
    history: dict[str, list[Floats]] = {m: [] for m in ("battery_drain", "errors", "freshness_s")}
    settings: dict[str, list[Floats]] = {INTERVAL: [], TIMEOUT: []}
    for day in range(7):
        seen = observe(fleet, truth(fleet, fleet.interval, fleet.timeout), day, rng)
        for metric, values in seen.items():
            history[metric].append(values)
        settings[INTERVAL].append(fleet.interval.copy())
        settings[TIMEOUT].append(fleet.timeout.copy())
    return analyse(_panel(history, settings, fleet.strata, stratum_keys()), tuple(TUNABLES))
