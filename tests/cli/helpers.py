"""Helpers of the CLI tests."""

from __future__ import annotations

import subprocess
import sys


def edgecfg(*argv: str, **options: object) -> subprocess.Popen[str]:
    """``edgecfg ARGV...`` as a child process (its own interpreter), text pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgecfg.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,  # type: ignore[arg-type]
    )
