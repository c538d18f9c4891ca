"""Ctrl-C and SIGTERM end event-loop commands cleanly: one line, exit 130."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from edgecfg.cli.interrupt import run_interruptibly

TIMEOUT = 120


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_cancels_the_main_coroutine_runs_its_cleanup_and_raises(signum: int) -> None:
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            os.kill(os.getpid(), signum)
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup may still await
            cleaned.append("closed")

    with pytest.raises(KeyboardInterrupt):
        run_interruptibly(forever())
    assert cleaned == ["closed"]


def test_without_a_signal_the_result_comes_back() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_interruptibly(answer()) == 42


def test_callback_errors_after_the_interruption_are_not_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def noisy() -> None:
        loop = asyncio.get_running_loop()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.Event().wait()
        finally:
            loop.call_soon(lambda: 1 / 0)  # what aiocoap's callbacks do to a dead exchange
            await asyncio.sleep(0.01)

    with pytest.raises(KeyboardInterrupt):
        run_interruptibly(noisy())
    assert "ZeroDivisionError" not in capsys.readouterr().err


def test_ctrl_c_during_the_demos_coap_step_is_one_line_and_exit_130() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "edgecfg.cli.main", "demo", "--agents", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # a background child of a non-interactive shell would inherit SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    assert demo.stdout is not None
    for line in demo.stdout:
        if line.strip().startswith("gateway on coap://"):  # agents are syncing now
            break
    else:
        pytest.fail("the demo never reached its CoAP step")
    demo.send_signal(signal.SIGINT)
    _, err = demo.communicate(timeout=TIMEOUT)
    assert demo.returncode == 130
    assert err == "edgecfg demo: interrupted\n"
