# atheris ships no complete type information; only the "unknown" checks are relaxed.
# pyright: reportMissingModuleSource=false, reportAttributeAccessIssue=false
# pyright: reportUnknownMemberType=false
"""Coverage-guided fuzzing of edgecfg's decoder edges with atheris (issue 7).

Run by hand, not in CI::

    uv run --with atheris==3.0.0 python tools/fuzz_atheris.py --target cbor -runs=100000

Targets: cbor, delta, senml, report, fetch (the same edges as
tests/fuzz/test_decoders.py).  Only EdgecfgError subclasses may escape a
target; anything else is a crash atheris reports with the input, which then
belongs in tests/fuzz/test_decoders.py as an ``@example``.  atheris 3.0.0
ships a cp311 wheel; 3.1.0 only cp312 and later.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from edgecfg.core.ids import DeviceId
    from edgecfg.core.layers import GLOBAL, layer_from_parts
    from edgecfg.errors import EdgecfgError
    from edgecfg.fleet.fleet import Fleet
    from edgecfg.fleet.sync import SyncService
    from edgecfg.store import DeviceRecord, MemoryStore
    from edgecfg.wire.cbor import DecodeLimits, Encoded, decode
    from edgecfg.wire.delta import apply_delta_encoded
    from edgecfg.wire.senml import decode_senml

LIMITS = DecodeLimits(max_bytes=4096, max_depth=16)
BASE = Encoded.of({"net": {"uplink": {"interval_s": 60, "host": "gw.example"}}, "log": [1, 2.5]})


def _service() -> SyncService:
    fleet = Fleet(MemoryStore())
    fleet.add_device(DeviceRecord(DeviceId("dev-1"), {"region": "eu"}, hardware="h",
                                  firmware="1.0.0", agent_version="1.0.0"))  # fmt: skip
    fleet.write_layer(GLOBAL, layer_from_parts({"net": {"interval_s": 60}}), author="fuzz",
                      message="", now=1)  # fmt: skip
    return SyncService(fleet)


def targets() -> dict[str, Callable[[bytes], object]]:
    service = _service()
    device = DeviceId("dev-1")
    return {
        "cbor": lambda data: decode(data, limits=LIMITS),
        "delta": lambda data: apply_delta_encoded(BASE, data, limits=LIMITS),
        "senml": lambda data: decode_senml(data, limits=LIMITS),
        "report": lambda data: service.report(device, data, now=2.0),
        "fetch": lambda data: service.fetch(device, data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", choices=sorted(targets()), required=True)
    args, rest = parser.parse_known_args()
    target = targets()[args.target]

    def one(data: bytes) -> None:
        with contextlib.suppress(EdgecfgError):  # a documented refusal
            target(data)

    atheris.Setup([sys.argv[0], *rest], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
