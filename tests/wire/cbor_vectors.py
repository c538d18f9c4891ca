"""The cbor-wg test vectors (../shared/vectors/cbor-wg), read from there.

Each suite file is itself CBOR: ``{"title", "description", "tests": [{"description",
"encoded", "decoded", "roundtrip"?, "encodeOptions"?, ...}], "fail"?, ...}``.  The
project's own decoder refuses tags, which the suites use (bignums, dates), so
the suite files are read with cbor2 directly.  ``roundtrip: false`` marks a
non-preferred encoding; ``fail: true`` (per suite or per test) marks inputs that
must be rejected.  Without ../shared every list is empty (the tests skip).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cbor2

from tests.paths import SHARED_DIR

CBOR_WG = ("vectors", "cbor-wg")
APPENDIX_A = [
    "mt0.cbor", "mt1.cbor", "mt2.cbor", "mt3.cbor", "mt4.cbor", "mt5.cbor", "mt6.cbor",
    "mt7-float.cbor", "mt7-simple.cbor", "streaming.cbor",
]  # fmt: skip


@dataclass(frozen=True)
class Vector:
    suite: str
    index: int
    description: str
    encoded: bytes
    decoded: object
    has_decoded: bool
    roundtrip: bool
    fail: bool


def load_suite(root: Path, relative: str) -> list[Vector]:
    path = root.joinpath(*CBOR_WG, relative)
    if not path.is_file():
        return []
    suite = cbor2.loads(path.read_bytes(), max_depth=100_000)
    suite_fail = bool(suite.get("fail", False))
    return [
        Vector(
            suite=path.name,
            index=index,
            description=str(test.get("description", "")),
            encoded=bytes(test["encoded"]),
            decoded=test.get("decoded"),
            has_decoded="decoded" in test,
            roundtrip=test.get("roundtrip", True) is not False,
            fail=bool(test.get("fail", suite_fail)),
        )
        for index, test in enumerate(suite["tests"])
    ]


APPENDIX_A_VECTORS = [
    v for name in APPENDIX_A for v in load_suite(SHARED_DIR, f"rfc8949-appendixA/{name}")
]
BAD_VECTORS = load_suite(SHARED_DIR, "rfc8949/bad.cbor")
GOOD_VECTORS = load_suite(SHARED_DIR, "rfc8949/good.cbor")
