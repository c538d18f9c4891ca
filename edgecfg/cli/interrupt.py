"""Ctrl-C and SIGTERM for commands that run an event loop.

:func:`run_interruptibly` is ``asyncio.run`` with one difference: the first
SIGINT or SIGTERM cancels the main coroutine (its ``finally`` blocks close
links and stop the gateway), and from then on the exchanges that die with it
stay quiet.  aiocoap reports a cancelled exchange from its callbacks (and one
of its log calls itself fails: it passes ``exception=`` to ``Logger.error``),
which printed hundreds of lines of tracebacks for one Ctrl-C.  Once the loop
has shut down, :class:`KeyboardInterrupt` is raised, which ``main`` turns into
one "interrupted" line and exit status 130.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_interruptibly(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion; raise :class:`KeyboardInterrupt` after a clean
    shutdown when it was interrupted by SIGINT or SIGTERM."""
    interrupted = False

    async def guarded() -> T | None:
        nonlocal interrupted
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal() -> None:
            nonlocal interrupted
            if interrupted:
                return
            interrupted = True
            _silence_aborted_exchanges()
            task.cancel()

        def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if not interrupted:  # before an interruption, errors are shown as usual
                loop.default_exception_handler(context)

        loop.set_exception_handler(on_loop_error)
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, on_signal)
        try:
            return await main
        except asyncio.CancelledError:
            if interrupted:
                return None
            raise
        finally:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)

    saved = (logging.root.manager.disable, logging.raiseExceptions)
    with warnings.catch_warnings():
        try:
            result = asyncio.run(guarded())
            if interrupted:
                gc.collect()  # what the cancelled exchanges left says its last words now
        finally:
            logging.disable(saved[0])
            logging.raiseExceptions = saved[1]
    if interrupted:
        raise KeyboardInterrupt
    return result  # pyright: ignore[reportReturnType]  # None only when interrupted


def _silence_aborted_exchanges() -> None:
    """Exchanges cut off by the interruption are expected to fail: say nothing."""
    logging.raiseExceptions = False  # aiocoap's failing log call must not print a traceback
    logging.disable(logging.CRITICAL)
    # requests that were being rendered when their exchange was cancelled
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
