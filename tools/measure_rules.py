"""What the device-local adaptive rules cost on the device (issue 14).

Run by hand::

    uv run python tools/measure_rules.py

Prints the time of one pure evaluation of the example rules
(fixtures/rules/examples.yaml) on the sensor fixture config, of one
``LocalRules.wake`` that changes the sealed record (an atomic, fsynced
write) and of one that changes nothing, and the bytes the layer adds to a
state report.  Times are this machine's (shared cores: read the order of
magnitude).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from edgecfg.agent.rules import LocalRules
from edgecfg.agent.sealed_store import LocalState
from edgecfg.cli.files import load_rules, load_schema
from edgecfg.core.ids import ETag
from edgecfg.core.rules import RuleState, evaluate
from edgecfg.core.tree import Tree
from edgecfg.wire.cbor import Encoded
from edgecfg.wire.messages import DeviceReport

ROOT = Path(__file__).resolve().parent.parent
WAKES = 20_000
WRITES = 200


def main() -> None:
    rules = load_rules(str(ROOT / "fixtures" / "rules" / "examples.yaml"))
    schema = load_schema(str(ROOT / "fixtures" / "schema" / "device.json"))
    base: Tree = json.loads((ROOT / "fixtures" / "configs" / "sensor-default.json").read_text())
    state: dict[str, RuleState] = {}
    started = time.perf_counter()
    for wake in range(WAKES):  # the battery crosses its thresholds every 500 wakes
        battery = 18.0 if (wake // 500) % 2 else 40.0
        inputs = {"battery_pct": battery, "rsrp_dbm": -120.0}
        state, _ = evaluate(rules, state, inputs, wake * 3600.0, base=base, schema=schema)
    evaluate_us = (time.perf_counter() - started) / WAKES * 1e6
    _, layer = evaluate(rules, {}, {"battery_pct": 18.0}, 0.0, base=base, schema=schema)
    plain = DeviceReport(applied=ETag(bytes(8))).encode()
    reported = DeviceReport(applied=ETag(bytes(8)), adapt=layer).encode()
    with tempfile.TemporaryDirectory() as folder:
        local = LocalState(folder)
        local.save_config(Encoded.of(base))
        device = LocalRules(local, rules, schema)
        started = time.perf_counter()
        for wake in range(WRITES):  # enter and leave on alternate days: a write each
            battery = 18.0 if wake % 2 else 40.0
            device.wake({"battery_pct": battery}, now=wake * 86_400.0, base=base)
        write_ms = (time.perf_counter() - started) / WRITES * 1e3
        started = time.perf_counter()
        for wake in range(WRITES):  # nothing changes: nothing written
            device.wake({"battery_pct": 50.0}, now=1e9 + wake, base=base)
        quiet_us = (time.perf_counter() - started) / WRITES * 1e6
    print(f"evaluate, 2 example rules, 5 actions: {evaluate_us:.1f} us per wake ({WAKES} wakes)")
    print(f"LocalRules.wake that writes the sealed record: {write_ms:.2f} ms; that does not: "
          f"{quiet_us:.0f} us")  # fmt: skip
    print(f"state report: {len(plain)} B; with battery-low's 3 values: {len(reported)} B "
          f"(+{len(reported) - len(plain)} B, once per change)")  # fmt: skip


if __name__ == "__main__":
    main()
