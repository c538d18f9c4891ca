"""``edgecfg bench oscore``: what OSCORE costs the gateway at fleet scale (issue 7).

Two gateway databases are enrolled in this run, one with 10 devices and one
with ``--devices`` (100,000 by default).  Each is opened (twice, alternating;
the first round warms up and is discarded) by a fresh child process
(:mod:`edgecfg.bench.oscore_child`) that starts a gateway on it and plays
OSCORE requests from ``--sample`` of its devices.  Printed side by side:

- start-up time (open the database, build the credentials, bind) and RSS;
- per-request OSCORE cost (key-id lookup, unprotect with replay check,
  protect the response), cold (first request: context loaded from the
  store) and warm, p50/p99;

with the same-run baseline of aiocoap's stock ``CredentialsMap``, which tries
each credential in turn: its lookup time for 10 peers and for
``min(--devices, 10,000)`` peers, extrapolated linearly to ``--devices``.
The target: the large fleet costs what the small one does (ratio ~1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgecfg.bench.oscore_child import naive_lookup_us
from edgecfg.crypto import RecordCipher
from edgecfg.errors import CommandError
from edgecfg.fleet.credentials import Secret, seal
from edgecfg.store import SQLiteStore

SMALL = 10
NAIVE_LIMIT = 10_000


def _enroll(db: Path, cipher: RecordCipher, count: int) -> float:
    """Enrol ``count`` devices in one transaction; returns devices per second."""
    started = time.perf_counter()
    entries = [
        ("device", name, seal(cipher, "device", name, Secret.generate()))
        for name in (f"dev-{i:06d}" for i in range(count))
    ]
    with SQLiteStore(db) as store:
        store.enroll_many(entries, now=time.time())
    return count / (time.perf_counter() - started)


def _child(db: Path, key: bytes, sample: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "edgecfg.bench.oscore_child", str(db), key.hex(), str(sample)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise CommandError(f"bench child failed on {db}: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


def run_oscore_bench(*, devices: int, sample: int, as_json: bool) -> int:
    if devices < SMALL or sample < 1:
        raise CommandError(f"--devices must be at least {SMALL} and --sample at least 1")
    key = os.urandom(32)
    cipher = RecordCipher(key)
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-oscore-") as tmp:
        results: dict[int, dict[str, Any]] = {}
        rates: dict[int, float] = {}
        for count in (SMALL, devices):
            rates[count] = _enroll(Path(tmp) / f"fleet-{count}.db", cipher, count)
        # Two rounds, alternating; the first only warms the machine up (the
        # first child otherwise reads slower).  Each run gets its own copy of
        # the database: the sampled devices' sequence numbers start over.
        for _ in range(2):
            for count in (SMALL, devices):
                run = Path(tmp) / f"run-{count}.db"
                shutil.copyfile(Path(tmp) / f"fleet-{count}.db", run)
                results[count] = _child(run, key, min(sample, count))
    naive_peers = min(devices, NAIVE_LIMIT)
    naive_small = naive_lookup_us(SMALL)
    naive_large = naive_lookup_us(naive_peers)
    naive_extrapolated = naive_large * devices / naive_peers
    report = {
        "devices": devices,
        "sample": sample,
        "enroll_per_s": rates[devices],
        "small": results[SMALL],
        "large": results[devices],
        "naive_lookup_us": {
            str(SMALL): naive_small,
            str(naive_peers): naive_large,
            f"{devices} (extrapolated)": naive_extrapolated,
        },
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    small, large = results[SMALL], results[devices]
    print(f"OSCORE at fleet scale: {devices:,} enrolled devices vs {SMALL}, same run")
    print(f"  enrolment: {rates[devices]:,.0f} devices/s (sealed secrets, one transaction)")
    print(f"  {'':34}{SMALL:>12}{devices:>12,}{'ratio':>8}")
    rows = [
        ("start-up (open, credentials, bind) ms", "startup_ms"),
        ("RSS after start-up MiB", "rss_started_mib"),
        ("RSS after sampled requests MiB", "rss_after_sample_mib"),
        ("cold request p50 us", "cold_p50_us"),
        ("cold request p99 us", "cold_p99_us"),
        ("warm request p50 us", "warm_p50_us"),
        ("warm request p99 us", "warm_p99_us"),
    ]
    for label, field in rows:
        ratio = large[field] / small[field] if small[field] else float("nan")
        print(f"  {label:34}{small[field]:>12.1f}{large[field]:>12.1f}{ratio:>8.2f}")
    print(
        f"  baseline, aiocoap CredentialsMap lookup alone: {naive_small:.1f} us at {SMALL}, "
        f"{naive_large:,.0f} us at {naive_peers:,}, ~{naive_extrapolated / 1000:,.0f} ms "
        f"at {devices:,} (linear)"
    )
    print(
        f"  sample: {small['sample']} and {large['sample']} devices, one cold request each; "
        f"warm requests repeat them until {sample} are timed"
    )
    return 0
