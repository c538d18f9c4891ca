"""``edgecfg bench flood``: the gateway under a single-host flood (issue 20).

The gateway runs in a child process (its RSS, read from ``/proc``, is its
own), the flood (:mod:`edgecfg.bench.hostile`) in another, from 127.0.0.2; a
legitimate device (a real agent, 127.0.0.1) runs full syncs one after the
other in this process, from a fresh local state each, before, during and
after the flood.  Reported, with the same-run baseline (before the flood):

- gateway RSS, sampled every second: the baseline (the last sample before
  the flood), the peak during the flood, and the sample taken ``--after``
  seconds after the flood ended (targets: peak <= baseline + 200 MiB; after
  within 10% of the baseline), and when it was first back within 10%;
- the device's sync latency and failures before, during and after
  (target: every sync succeeds within 5 s);
- the flood's answers by code (target: no 5.00) and tracebacks in the
  gateway's log (target: none).

Each target gets a verdict, PASS or MISS, in the text and under ``targets``
in the JSON.

``--oscore`` runs the gateway with OSCORE (the device enrolled, the flood
unauthenticated); ``--unbounded`` runs it without budgets, to show what they
buy.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Final

from edgecfg.bench.measure import median, rss_mib
from edgecfg.errors import CommandError

DEVICES: Final = 10
LEGIT: Final = "legit-0"
SYNC_TIMEOUT_S: Final = 120.0
TARGET_SYNC_S: Final = 5.0
TARGET_GROWTH_MIB: Final = 200.0
TARGET_BACK: Final = 0.10  # RSS after, above the baseline, as a part of it
PHASES: Final = ("baseline", "flood", "after")
SERIES_STEP_S: Final = 10
KEY: Final = bytes(range(32))


# -- the processes ----------------------------------------------------------------------


def _prepare(folder: Path, *, oscore: bool) -> Path | None:
    """The fleet database; with ``oscore``, the device's credentials file."""
    from edgecfg.bench.sync import FIXTURE_SCHEMA
    from edgecfg.core.ids import DeviceId
    from edgecfg.crypto import RecordCipher
    from edgecfg.fleet.credentials import enroll, write_peer_side
    from edgecfg.fleet.fleet import Fleet
    from edgecfg.store import DeviceRecord, SQLiteStore

    with SQLiteStore(folder / "fleet.db") as store:
        fleet = Fleet(store)
        fleet.load_schema(FIXTURE_SCHEMA.read_bytes(), "json", source="bench", now=time.time())
        for name in [LEGIT, *(f"dev-{n}" for n in range(DEVICES))]:
            fleet.add_device(DeviceRecord(DeviceId(name), {"region": "eu/west"},
                                          hardware="nbiot-sensor-r3", firmware="2.1.0",
                                          agent_version="1.0.0"))  # fmt: skip
        if not oscore:
            return None
        enrolment = enroll(store, RecordCipher(KEY), "device", LEGIT, now=time.time())
        return write_peer_side(enrolment, folder / "credentials", gateway=None)


@dataclass(frozen=True, slots=True)
class _Serving:
    db: str
    port: int
    log: str
    oscore: bool
    unbounded: bool


def _serve(setup: _Serving, ready: Event) -> None:
    """Child process: the gateway, logging to ``setup.log``."""
    db, port, log, oscore, unbounded = (setup.db, setup.port, setup.log, setup.oscore,
                                        setup.unbounded)  # fmt: skip
    from edgecfg.core.admission import UNLIMITED
    from edgecfg.crypto import RecordCipher
    from edgecfg.fleet.identity import InsecurePolicy
    from edgecfg.gateway.oscore import StoredCredentials
    from edgecfg.gateway.server import Gateway
    from edgecfg.store import SQLiteStore

    stream = open(log, "a")  # noqa: SIM115  (lives as long as the process)
    sys.stderr = stream
    logging.basicConfig(level=logging.WARNING, stream=stream)

    async def main() -> None:
        with SQLiteStore(db) as store:
            budgets = UNLIMITED if unbounded else None
            if oscore:
                credentials = StoredCredentials(store, RecordCipher(KEY))
                gateway = Gateway(store, credentials=credentials, refresh_s=1.0, budgets=budgets)
            else:
                gateway = Gateway(store, policy=InsecurePolicy(), refresh_s=1.0, budgets=budgets)
            if unbounded:
                gateway.gate.limit = 10**9
            await gateway.start("127.0.0.1", port)
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(main())


def _flood(port: int, rate: float, seconds: float, ports: int, out: Any) -> None:
    """Child process: the flood; puts its report on ``out``."""
    from edgecfg.bench.hostile import flood

    devices = [f"dev-{n}" for n in range(DEVICES)]
    report = flood(("127.0.0.1", port), devices=devices, rate=rate, seconds=seconds, ports=ports)
    out.put((report.sent, report.seconds, dict(report.answers)))


# -- the measurement --------------------------------------------------------------------


@dataclass(slots=True)
class _Phase:
    syncs: list[float] = field(default_factory=list[float])
    failures: int = 0
    rss: list[float] = field(default_factory=list[float])
    begun: float = 0.0  # monotonic time the phase began
    slowest_at: float | None = None  # when its slowest sync started, after ``begun``

    def synced(self, started: float, seconds: float) -> None:
        if not self.syncs or seconds > max(self.syncs):
            self.slowest_at = started - self.begun
        self.syncs.append(seconds)

    def figures(self) -> dict[str, float | int | None]:
        ordered = sorted(self.syncs)
        return {
            "syncs": len(ordered),
            "failures": self.failures,
            "sync_median_s": round(median(ordered), 3) if ordered else None,
            "sync_max_s": round(ordered[-1], 3) if ordered else None,
            "slowest_started_s": round(self.slowest_at, 1) if self.slowest_at is not None else None,
            "rss_max_mib": round(max(self.rss), 1) if self.rss else None,
            "rss_last_mib": round(self.rss[-1], 1) if self.rss else None,
        }


async def _device(
    uri: str, folder: Path, credentials: Path | None, *, phases: Sequence[_Phase],
    current: list[int], stop: asyncio.Event,
) -> None:  # fmt: skip
    """Full syncs one after the other, each from a fresh local state."""
    from edgecfg.agent.coap import CoapLink
    from edgecfg.agent.sealed_store import LocalState
    from edgecfg.agent.sync import Agent

    number = 0
    async with CoapLink(uri, ack_timeout=1.0, credentials=credentials) as link:
        while not stop.is_set():
            number += 1
            phase = phases[current[0]]
            agent = Agent(link, LocalState(folder / f"agent-{number}"), device=LEGIT)
            started = time.monotonic()
            try:
                await asyncio.wait_for(agent.sync(), SYNC_TIMEOUT_S)
            except Exception:  # a failed sync is a figure, not the end of the bench
                phase.failures += 1
            else:
                phase.synced(started, time.monotonic() - started)
            await asyncio.sleep(0.5)


async def _sample(
    pid: int, phases: Sequence[_Phase], current: list[int], stop: asyncio.Event,
    series: list[tuple[float, str, float]], *, started: float,
) -> None:  # fmt: skip
    while not stop.is_set():
        rss = rss_mib(pid)
        phases[current[0]].rss.append(rss)
        series.append((round(time.monotonic() - started, 1), PHASES[current[0]], round(rss, 1)))
        await asyncio.sleep(1.0)


def run_flood_bench(
    *, seconds: float, after: float, rate: float, ports: int, oscore: bool, unbounded: bool,
    baseline: float = 10.0,
) -> dict[str, Any]:  # fmt: skip
    """Entry point of ``edgecfg bench flood``; returns the report."""
    from edgecfg.bench.measure import free_udp_port

    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="edgecfg-flood-") as tmp:
        folder = Path(tmp)
        credentials = _prepare(folder, oscore=oscore)
        port, log = free_udp_port(), folder / "gateway.log"
        ready = spawn.Event()
        setup = _Serving(str(folder / "fleet.db"), port, str(log), oscore, unbounded)
        gateway = spawn.Process(target=_serve, args=(setup, ready), daemon=True)
        gateway.start()
        try:
            if not ready.wait(60):
                raise CommandError("the benchmark gateway did not start")
            pid = gateway.pid or 0
            report = asyncio.run(_measure(
                pid, port, folder, credentials, spawn, seconds=seconds, after=after, rate=rate,
                ports=ports, baseline=baseline,
            ))  # fmt: skip
        finally:
            gateway.terminate()
            gateway.join(10)
        text = log.read_text(errors="replace") if log.exists() else ""
    first = text.find("Traceback")
    report["gateway_log"] = {
        "tracebacks": text.count("Traceback"),
        "lines": len(text.splitlines()),
        "first_traceback": text[first : first + 3000] if first >= 0 else None,
        "warnings": sorted({line[:160] for line in text.splitlines() if "WARNING" in line})[:10],
    }
    report["mode"] = ("OSCORE" if oscore else "plain CoAP") + (", no budgets" if unbounded else "")
    report["flood"].update({"rate_asked": rate, "source_ports": ports})
    report["targets"] = targets(report)
    return report


async def _measure(
    pid: int, port: int, folder: Path, credentials: Path | None, spawn: Any, *,
    seconds: float, after: float, rate: float, ports: int, baseline: float,
) -> dict[str, Any]:  # fmt: skip
    uri = f"coap://127.0.0.1:{port}"
    phases = [_Phase(), _Phase(), _Phase()]
    current = [0]
    stop = asyncio.Event()
    device = asyncio.create_task(
        _device(uri, folder, credentials, phases=phases, current=current, stop=stop)
    )
    series: list[tuple[float, str, float]] = []
    started = time.monotonic()
    sampler = asyncio.create_task(_sample(pid, phases, current, stop, series, started=started))
    await asyncio.sleep(baseline)
    while not phases[0].syncs and not phases[0].failures:  # at least one baseline sync
        await asyncio.sleep(0.1)
    baseline_rss = rss_mib(pid)  # just before the flood
    out = spawn.Queue()
    flooder = spawn.Process(target=_flood, args=(port, rate, seconds, ports, out), daemon=True)
    current[0] = 1
    phases[1].begun = time.monotonic()
    flooder.start()
    sent, flood_s, answers = await asyncio.to_thread(out.get, True, seconds + 120)
    flooder.join(10)
    ended = time.monotonic()
    current[0] = 2
    phases[2].begun = ended
    await asyncio.sleep(max(0.0, ended + after - time.monotonic()))
    after_rss = rss_mib(pid)  # ``after`` seconds after the flood ended
    stop.set()
    await asyncio.gather(device, sampler)
    before, during, later = (phase.figures() for phase in phases)
    limit = baseline_rss * (1 + TARGET_BACK)
    back_at = None  # seconds after the flood from which every sample is within 10%
    for at, phase, mib in series:
        if phase != "after":
            continue
        if mib > limit:
            back_at = None
        elif back_at is None:
            back_at = round(max(0.0, at - (ended - started)), 1)
    return {
        "baseline": before,
        "during": during,
        "after": later,
        "after_s": after,
        "rss": {
            "baseline_mib": round(baseline_rss, 1),
            "peak_mib": round(max([baseline_rss, *phases[1].rss]), 1),
            "after_mib": round(after_rss, 1),
            "back_within_10pct_after_s": back_at if after_rss <= limit else None,
        },
        "rss_series": [list(sample) for sample in series],  # [seconds, phase, MiB] each second
        "flood": {
            "sent": sent,
            "seconds": round(flood_s, 1),
            "answers": answers,
            "server_errors": answers.get("5.00", 0),
        },
    }


def print_report(report: dict[str, Any]) -> None:
    """The report as text, a verdict beside each target."""
    base, during, after = report["baseline"], report["during"], report["after"]
    flood = report["flood"]
    print(f"edgecfg bench flood ({report['mode']}): {flood['sent']} datagrams in "
          f"{flood['seconds']} s from {flood['source_ports']} ports of 127.0.0.2 "
          f"(asked {flood['rate_asked']:.0f}/s)")  # fmt: skip
    print(f"{'phase':<10}{'RSS max MiB':>12}{'RSS last':>10}{'syncs':>7}{'failed':>8}"
          f"{'median s':>10}{'max s':>8}")  # fmt: skip
    for name, phase in (("baseline", base), ("flood", during), ("after", after)):
        print(f"{name:<10}{_num(phase['rss_max_mib']):>12}{_num(phase['rss_last_mib']):>10}"
              f"{phase['syncs']:>7}{phase['failures']:>8}{_num(phase['sync_median_s']):>10}"
              f"{_num(phase['sync_max_s']):>8}")  # fmt: skip
    shown = report["rss_series"][::SERIES_STEP_S]
    print(f"RSS MiB every {SERIES_STEP_S} s: "
          + " ".join(f"{mib:.0f}" + ("*" if phase == "flood" else "") for _, phase, mib in shown)
          + "  (* during the flood)")  # fmt: skip
    answers = ", ".join(f"{code}: {count}" for code, count in sorted(flood["answers"].items()))
    print(f"flood answers: {answers or 'none'}")
    rss = report["rss"]
    back = rss["back_within_10pct_after_s"]
    print(f"RSS MiB: baseline {rss['baseline_mib']:.1f} (just before the flood), peak "
          f"{rss['peak_mib']:.1f}, {report['after_s']:.0f} s after the flood "
          f"{rss['after_mib']:.1f}; back within 10% "
          + ("never" if back is None else f"{back:.0f} s after"))  # fmt: skip
    print("targets:")
    for target in report["targets"].values():
        print(f"  {'PASS' if target['met'] else 'MISS'}  {target['text']}")


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 20's targets against a report's figures, each with its verdict."""
    rss, during, after = report["rss"], report["during"], report["after"]
    base = rss["baseline_mib"]
    growth = rss["peak_mib"] - base
    back = (rss["after_mib"] - base) / base if base else 0.0
    slowest, started_s, phase = max(
        (during["sync_max_s"] or 0.0, during["slowest_started_s"], "the flood began"),
        (after["sync_max_s"] or 0.0, after["slowest_started_s"], "it ended"),
        key=lambda candidate: candidate[0],
    )
    when = "" if started_s is None else f"; it started {started_s:.0f} s after {phase}"
    failed = during["failures"] + after["failures"]
    errors, tracebacks = report["flood"]["server_errors"], report["gateway_log"]["tracebacks"]
    return {
        "rss_growth": {
            "met": growth <= TARGET_GROWTH_MIB, "value_mib": round(growth, 1),
            "text": f"RSS growth during the flood {growth:.1f} MiB (<= {TARGET_GROWTH_MIB:.0f})",
        },
        "rss_after": {
            "met": back <= TARGET_BACK, "value": round(back, 3),
            "text": f"RSS {report['after_s']:.0f} s after the flood {back:+.1%} of the baseline "
                    f"(<= +{TARGET_BACK:.0%})",
        },
        "sync": {
            "met": slowest <= TARGET_SYNC_S and failed == 0, "slowest_s": round(slowest, 2),
            "failed": failed,
            "text": f"slowest sync during/after {slowest:.2f} s (<= {TARGET_SYNC_S:.0f}{when}); "
                    f"failed {failed} (0)",
        },
        "errors": {
            "met": errors == 0 and tracebacks == 0, "server_errors": errors,
            "tracebacks": tracebacks,
            "text": f"5.00 answers {errors} (0); tracebacks in the gateway log {tracebacks} (0)",
        },
    }  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"
