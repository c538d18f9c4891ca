"""Helpers of the CLI tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from edgecfg.cli.main import main
from tests.gateway.helpers import free_udp_port
from tests.paths import SCHEMA


def edgecfg(*argv: str, **options: object) -> subprocess.Popen[str]:
    """``edgecfg ARGV...`` as a child process (its own interpreter), text pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgecfg.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,  # type: ignore[arg-type]
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``edgecfg ARGV...`` in this process: exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], db: str, *argv: str) -> str:
    """``edgecfg --db DB ARGV...`` that must succeed (its stderr names why not); stdout."""
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 0, err
    return out


@contextlib.contextmanager
def serving_one_device(db: str) -> Iterator[int]:
    """A fleet ``db`` with the fixture schema and device dev-1, served by an
    insecure ``gateway serve`` process on a free port (yielded); stopped with
    SIGTERM on the way out."""
    assert main(["--db", db, "schema", "load", "--create", str(SCHEMA)]) == 0
    assert main(["--db", db, "device", "add", "dev-1", "--group", "region=eu/west",
                 "--hardware", "nbiot-sensor-r3", "--agent-version", "1.0.0"]) == 0  # fmt: skip
    port = free_udp_port()
    gateway = edgecfg("--db", db, "gateway", "serve", "--bind", f"127.0.0.1:{port}", "--insecure")
    try:
        assert gateway.stdout is not None
        assert "serving" in gateway.stdout.readline()  # the banner: ready
        yield port
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.communicate(timeout=15)
