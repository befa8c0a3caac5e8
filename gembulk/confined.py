"""Local attachment files read only from inside their folder: resolved, checked, and opened without links.

A path in a row comes from whoever wrote the file. It is joined to the attachment root (never to the home
directory: `~` is a literal name) and resolved with every symbolic link, and it must stay inside the root.
That check runs before anything is sent; the read itself cannot rely on it, because a link can be put in
place between the check and the read. So every read opens the path from the root down, one component at
a time, with O_NOFOLLOW: a link met on the way is refused, not followed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import BinaryIO

_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}  # (path, device, inode, size, mtime) -> sha256
_MAX_DIGESTS = 4096


class OutsideRoot(PermissionError):
    """The path leads out of the attachment root (or through a link, which may)."""


def real_root(directory: str) -> str:
    """The attachment root as an absolute path with every link resolved (what paths are compared with)."""
    return os.path.realpath(os.path.abspath(directory))


def resolve(root: str, value: str) -> str:
    """A row's path joined to the root (an absolute path stays as it is) with every link resolved."""
    joined = os.path.join(root, value)
    try:
        return os.path.realpath(joined)
    except (ValueError, OSError):  # a NUL byte: no file has that name, and the check will say so
        return os.path.normpath(joined)


def inside(root: str, path: str) -> bool:
    """Whether a resolved path is the root or below it."""
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:
        return False


def open_file(root: str, path: str) -> BinaryIO:
    """Open a resolved path for reading, from the root down without following any link.

    Raises OutsideRoot when the path is not below the root or a link now stands on the way, and the
    usual OSError when it is gone or is not a regular file.
    """
    relative = os.path.relpath(path, root)
    parts = relative.split(os.sep)
    if not inside(root, path) or relative == os.curdir or os.pardir in parts:
        raise OutsideRoot(errno.EACCES, "outside the attachment folder", path)
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            below = _open_below(part, os.O_RDONLY | os.O_DIRECTORY, directory, path)
            os.close(directory)
            directory = below
        # O_NONBLOCK: a FIFO put in place of the file must not hang the read; a regular file ignores it.
        fd = _open_below(parts[-1], os.O_RDONLY | os.O_NONBLOCK, directory, path)
    finally:
        os.close(directory)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_below(name: str, flags: int, directory: int, path: str) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError as exc:
        # O_NOFOLLOW meets a link: ELOOP, or ENOTDIR when a directory was expected.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise OutsideRoot(errno.EACCES, "a symbolic link stands in the way", path) from exc
        raise


def size(root: str, path: str) -> int:
    with open_file(root, path) as handle:
        return os.fstat(handle.fileno()).st_size


def read(root: str, path: str) -> bytes:
    with open_file(root, path) as handle:
        return handle.read()


def digest(root: str, path: str) -> str:
    """sha256 of the file's bytes, remembered while the file is unchanged (inode, size and mtime)."""
    with open_file(root, path) as handle:
        info = os.fstat(handle.fileno())
        key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        found = _DIGESTS.get(key)
        if found is None:
            found = hashlib.file_digest(handle, "sha256").hexdigest()
            if len(_DIGESTS) >= _MAX_DIGESTS:
                _DIGESTS.clear()
            _DIGESTS[key] = found
        return found
