"""Running a service until SIGINT or SIGTERM, with a clean shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Any


class StartupError(Exception):
    """A service cannot start for a reason its operator must fix (a port in use, ...);
    the message says what and where, on one line."""


def listen_failure(what: str, host: str, port: int, exc: OSError) -> StartupError:
    """The error of a server that cannot bind ``host:port``."""
    # aiohttp's strerror repeats the address; the errno says it plainly.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StartupError(f"{what} cannot listen on {host}:{port}: {reason}")


def first_error(
    exc: BaseException, wanted: tuple[type[BaseException], ...]
) -> BaseException | None:
    """``exc`` if it is one of ``wanted``, else the first such in its exception groups."""
    if isinstance(exc, wanted):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_error(inner, wanted)
            if found is not None:
                return found
    return None


def run_until_signalled(main: Coroutine[Any, Any, object]) -> None:
    """Run ``main``; SIGINT or SIGTERM cancels it so its clean-up code runs."""

    async def supervise() -> None:
        task = asyncio.create_task(main)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    asyncio.run(supervise())
