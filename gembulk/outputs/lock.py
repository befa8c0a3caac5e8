"""One gembulk per output: an advisory lock on a file beside OUT that names the process holding it.

Every command that reads or writes OUT (an online run, `run --batch`, `batch wait|fetch`) holds it from
before it first reads OUT until it is done. The kernel drops an flock when its process dies, even by
SIGKILL, so a lock file left behind never blocks anyone; the holder deletes it when it is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence

from gembulk.errors import NotReadyError, UsageError

LOCK_SUFFIX = ".gembulk.lock"
_ATTEMPTS = 50  # a holder deleting the file between our open and our flock makes us try again
_SECRET_OPTIONS = ("--api-key",)
_SHOWN_COMMAND = 160  # characters of the holder's command line shown


def lock_path(output: str) -> str:
    """Beside the file OUT really is: two symbolic links to one output share its lock."""
    return os.path.realpath(output) + LOCK_SUFFIX


def scrubbed_command(argv: Sequence[str]) -> str:
    """The command line as a person would recognize it, without the value of --api-key."""
    words = ["gembulk"]
    hide_next = False
    for word in argv[1:]:
        if hide_next:
            words.append("***")
            hide_next = False
        elif word in _SECRET_OPTIONS:
            words.append(word)
            hide_next = True
        elif word.startswith(tuple(f"{option}=" for option in _SECRET_OPTIONS)):
            words.append(word.split("=", 1)[0] + "=***")
        else:
            words.append(word)
    return shlex.join(words)


def _holder_text(started: float, argv: Sequence[str]) -> bytes:
    return json.dumps({"pid": os.getpid(), "started": started, "command": scrubbed_command(argv)}).encode()


def describe_holder(data: bytes, now: float) -> str:
    """ "pid N, since HH:MM:SS: gembulk run …" from a lock file's content ("" when it says nothing)."""
    try:
        holder = json.loads(data)
        pid, started, command = int(holder["pid"]), float(holder["started"]), str(holder["command"])
    except (ValueError, KeyError, TypeError):
        return ""
    when = time.localtime(started)
    same_day = time.localtime(now)[:3] == when[:3]
    since = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", when)
    if len(command) > _SHOWN_COMMAND:
        command = command[: _SHOWN_COMMAND - 1] + "…"
    return f"pid {pid}, since {since}: {command}"


def _same_file(fd: int, path: str) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _busy(output: str, fd: int) -> NotReadyError:
    holder = ""
    with contextlib.suppress(OSError):
        holder = describe_holder(os.pread(fd, 4096, 0), time.time())
    return NotReadyError(
        f"{output} is being written by another gembulk" + (f" ({holder})" if holder else ""),
        hint="wait until it has finished, or write to another -o",
    )


def _acquire(output: str, path: str) -> int:
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot create the lock file {path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _busy(output, fd)
            os.close(fd)
            raise error from None
        except OSError as exc:
            os.close(fd)
            raise UsageError(f"-o {output}: cannot lock {path} ({exc.strerror})") from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the holder we waited behind removed it as it finished: lock the new one
    raise NotReadyError(f"{output}: could not take its lock {path}", hint="try again")


@contextlib.contextmanager
def output_lock(output: str, argv: Sequence[str] | None = None) -> Iterator[None]:
    """Hold OUT's lock; another gembulk on OUT gets exit 4 with one line naming this process."""
    path = lock_path(output)
    fd = _acquire(output, path)
    try:
        with contextlib.suppress(OSError):  # the description is a courtesy: a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_text(time.time(), sys.argv if argv is None else argv), 0)
        yield
    finally:
        # Deleted while still held: whoever opened it meanwhile finds it unlinked and takes a new one.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
