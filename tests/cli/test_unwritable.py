"""``gateway serve`` on a database or lock file it may not write: one line, exit 1,
no traceback (issue 20)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecfg.cli.main import main

TIMEOUT = 60
ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder any user may enter (pytest's own tmp folders are private to their user)."""
    path = Path(tempfile.mkdtemp(prefix="edgecfg-unwritable-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def serve_as(db: Path, *, user: int | None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "edgecfg.cli.main", "gateway", "serve", "--db", str(db),
            "--insecure", "--bind", "127.0.0.1:0"]  # fmt: skip
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def other_user() -> int | None:
    """Run as ``nobody`` when root (root may write anything), else as ourselves."""
    if os.geteuid() != 0:
        return None
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot take write access away")
    return NOBODY


def one_line_error(result: subprocess.CompletedProcess[str], *, naming: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecfg gateway: error: ")
    assert naming in lines[0]


def test_a_read_only_database_is_refused_in_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = folder / "fleet.db"
    assert main(["--db", str(db), "init"]) == 0
    capsys.readouterr()
    for path in folder.iterdir():
        path.chmod(0o444)
    result = serve_as(db, user=other_user())
    one_line_error(result, naming="readonly")
    assert "serving" not in result.stdout


def test_a_lock_file_that_cannot_be_opened_is_refused_in_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = folder / "fleet.db"
    assert main(["--db", str(db), "init"]) == 0
    capsys.readouterr()
    (folder / "fleet.db.lock").mkdir()
    one_line_error(serve_as(db, user=None), naming="fleet.db.lock")


def test_a_lock_file_in_a_read_only_folder_is_refused_in_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = folder / "fleet.db"
    assert main(["--db", str(db), "init"]) == 0
    capsys.readouterr()
    for path in folder.iterdir():
        path.chmod(0o666)
    folder.chmod(0o555)
    try:
        one_line_error(serve_as(db, user=other_user()), naming="fleet.db.lock")
    finally:
        folder.chmod(0o777)
