"""Which files any process opened, through Linux inotify: proof that a file was never read.

An access time proves little (noatime and relatime mounts skip updates); inotify reports every open of a
watched file by any process, and a stat or a path resolution opens nothing.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_IN_ACCESS = 0x001
_IN_OPEN = 0x020
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (a name follows for a watched directory only)


class OpenWatch:
    """The watched files that were opened since the watch started."""

    def __init__(self, fd: int, paths: dict[int, Path]) -> None:
        self._fd = fd
        self._paths = paths
        self._opened: set[Path] = set()

    def opened(self) -> set[Path]:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return set(self._opened)
            offset = 0
            while offset < len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & (_IN_OPEN | _IN_ACCESS) and wd in self._paths:
                    self._opened.add(self._paths[wd])


@contextmanager
def watch_opens(*paths: Path) -> Iterator[OpenWatch]:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    try:
        watched: dict[int, Path] = {}
        for path in paths:
            wd = libc.inotify_add_watch(fd, os.fsencode(path), _IN_OPEN | _IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"cannot watch {path}")
            watched[wd] = path
        yield OpenWatch(fd, watched)
    finally:
        os.close(fd)
