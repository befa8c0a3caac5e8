"""SIGINT and SIGTERM: stop dispatching, let requests in flight finish, stop at once on a second signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from gembulk.executors import Executor
from gembulk.observer import RunObserver


async def wait_or_stop(
    task: asyncio.Task[None],
    stop: StopSignal,
    executor: Executor,
    grace: float,
    observer: RunObserver,
) -> bool:
    """Wait for the executor; on SIGINT/SIGTERM stop dispatching, give in-flight rows `grace` seconds."""
    stop_wait = asyncio.create_task(stop.first.wait())
    try:
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
    if task.done():
        task.result()  # re-raise a fatal error
        return False
    observer.message(
        f"interrupted: finishing requests in flight (up to {grace:g}s); press Ctrl-C again to stop now"
    )
    executor.stop_dispatching()
    second = asyncio.create_task(stop.second.wait())
    try:
        await asyncio.wait({task, second}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    finally:
        second.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


class StopSignal:
    """SIGINT/SIGTERM as two events: the first asks for a graceful stop, the second for an immediate one."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()

    def _on_signal(self) -> None:
        (self.second if self.first.is_set() else self.first).set()

    @contextlib.contextmanager
    def installed(self) -> Any:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal)
        try:
            yield self
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
