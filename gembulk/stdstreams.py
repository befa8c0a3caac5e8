"""The standard streams at start-up: closed ones reopened on /dev/null, so that no file gembulk opens later
becomes fd 0, 1 or 2, and no message can land on stdout; stderr made safe to write to whatever its reader
does."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any

STDIN, STDOUT, STDERR = 0, 1, 2
_closed: frozenset[int] = frozenset()


def closed_at_start() -> frozenset[int]:
    """Which of fd 0, 1, 2 were closed when gembulk started (`<&-`, `>&-`, `2>&-`)."""
    return _closed


class _SafeStderr:
    """stderr that never raises: a reader that went away (`2>&1 | head`) or a closed stream drops the
    message; a progress line must never turn into a failed run."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _reopen_on_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def guard() -> None:
    """Call first thing: reopen closed standard fds on /dev/null and give Python stream objects for them
    (it sets sys.stdout or sys.stderr to None, and print(file=None) would then write to stdout)."""
    global _closed
    closed = set()
    for fd in (STDIN, STDOUT, STDERR):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        _reopen_on_devnull(fd)
    _closed = frozenset(closed)
    if STDIN in closed or sys.stdin is None:
        sys.stdin = io.TextIOWrapper(open(STDIN, "rb", closefd=False))  # noqa: SIM115
    if STDOUT in closed or sys.stdout is None:
        sys.stdout = io.TextIOWrapper(open(STDOUT, "wb", closefd=False), write_through=True)  # noqa: SIM115
    if STDERR in closed or sys.stderr is None:
        sys.stderr = io.TextIOWrapper(open(STDERR, "wb", closefd=False), write_through=True)  # noqa: SIM115
    if not isinstance(sys.stderr, _SafeStderr):
        sys.stderr = _SafeStderr(sys.stderr)  # type: ignore[assignment]
