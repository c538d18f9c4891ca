"""The README's CLI tour runs as written, top to bottom, with no earlier state.

The first ``sh`` block under "## CLI tour" is run by bash with ``set -e`` in
an empty folder that has only the repository's ``fixtures/``.  ``uv run
edgecfg`` and ``uv run python`` go to this test's interpreter (a ``uv``
script first on ``PATH``), and the gateway's port 5683 becomes a free one so
that the tour cannot meet another process on the machine.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from tests.gateway.helpers import free_udp_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 300

UV_SHIM = """#!/bin/sh
if [ "$1" = run ] && [ "$2" = edgecfg ]; then shift 2; exec "{python}" -m edgecfg.cli.main "$@"; fi
if [ "$1" = run ] && [ "$2" = python ]; then shift 2; exec "{python}" "$@"; fi
echo "the tour may only use 'uv run edgecfg' and 'uv run python'" >&2
exit 2
"""


def tour_block(text: str) -> str:
    """The first ``sh`` code block after the "## CLI tour" heading."""
    section = text[text.index("\n## CLI tour\n") :]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the CLI tour has no sh block"
    return found.group(1)


def test_the_tour_block_is_found_and_covers_every_role() -> None:
    block = tour_block(README.read_text())
    for command in ("init", "gateway serve", "agent run", "agent set", "delta old.json"):
        assert command in block


def test_the_cli_tour_runs_as_written(tmp_path: Path) -> None:
    script = tour_block(README.read_text()).replace("5683", str(free_udp_port()))
    work = tmp_path / "tour"
    work.mkdir()
    (work / "fixtures").symlink_to(ROOT / "fixtures")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "uv"
    shim.write_text(UV_SHIM.format(python=sys.executable))
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "EDGECFG_DB": ""},
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    out = result.stdout
    # What the tour's comments promise:
    assert "12 violation(s) of edgecfg-device v1\nexit 1\n" in out
    assert "REFUSED: 1 device(s) would violate net.uplink.interval_s: expected >= 10" in out
    assert re.search(r"\n    defaults +3600 +overridden\n", out), out
    assert re.search(r"\n    region/eu r1 +600 +applied\n", out), out
    assert "device dev-1: enrolled with key id 01" in out
    assert "dev-1: updated " in out
    assert "edgecfg gateway: stopped" in out
    assert "net.uplink.interval_s = 7200" in out
    assert "expected >= 600 (local-override policy); policy:" in result.stderr
    assert "Traceback" not in result.stderr
