"""Helpers of the CLI tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgecfg.cli.main import main


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
