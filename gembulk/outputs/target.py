"""What -o names: stdout, a stream (a device, a FIFO, a process substitution) or a file; the checks made
on it before anything is sent; the temporary files beside a file output and their leftovers."""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import stat
from dataclasses import dataclass

from gembulk.errors import UsageError

TEMP_SUFFIX = ".gembulk-tmp"  # every temporary file or folder beside OUT: .OUT-NAME.<random>.gembulk-tmp
LEGACY_SIDECAR = ".gembulk.json"  # the job file earlier versions kept beside OUT; fingerprints replace it
LEGACY_BATCH_LOCK = ".gembulk-batch.lock"  # the batch-only lock of earlier versions
# Files beside OUT that hold finished records, so they are never removed as leftovers: the next run reads
# them as part of OUT (resume) and folds them into it.
HELD_SUFFIX = ".gembulk-held"  # --keep-order: records finished ahead of a slower one, not yet in OUT
PARTIAL_SUFFIX = ".gembulk-partial.jsonl"  # Parquet output: the records as JSONL until the run completes
# Paths that name a process's streams or devices whatever stat says: /dev/stdout is a regular file when
# the shell redirected it to one, and a lock, a temp file or a rename beside it must never happen.
_STREAM_ROOTS = ("/dev/", "/proc/")
_NOT_STREAMS = ("/dev/shm/",)  # a tmpfs for ordinary files


class OutputKind(enum.Enum):
    STDOUT = "stdout"  # -o - (the default)
    STREAM = "stream"  # written as it comes: no lock, no resume, no fsync, no temp file
    FILE = "file"  # a regular file: locked, resumed, compacted, replaced atomically


@dataclass(frozen=True)
class OutputTarget:
    path: str
    kind: OutputKind

    @property
    def resumable(self) -> bool:
        """A file: locked while written, resumed by the next run, compacted at the end."""
        return self.kind is OutputKind.FILE

    @property
    def directory(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


def output_target(path: str) -> OutputTarget:
    """Classify -o: "-" is stdout; something that exists and is not a regular file, or a path under
    /dev or /proc, is a stream; anything else (a new file too) is a file."""
    if path == "-":
        return OutputTarget(path, OutputKind.STDOUT)
    absolute = os.path.abspath(path)
    if absolute.startswith(_STREAM_ROOTS) and not absolute.startswith(_NOT_STREAMS):
        return OutputTarget(path, OutputKind.STREAM)
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (created at the first record), or a problem check_output names
        return OutputTarget(path, OutputKind.FILE)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return OutputTarget(path, OutputKind.FILE)
    return OutputTarget(path, OutputKind.STREAM)


def check_output(target: OutputTarget) -> None:
    """Refuse, before anything is sent, an output that could not be written: exit 2, one line."""
    path, directory = target.path, target.directory
    if target.kind is OutputKind.STDOUT:
        return
    if target.kind is OutputKind.STREAM:
        if not os.path.exists(path):
            raise UsageError(f"-o {path}: no such file or device")
        if os.path.isdir(path):
            raise UsageError(f"-o {path} is a directory; give a file path")
        return
    if not os.path.isdir(directory):
        raise UsageError(f"-o {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"-o {path} is a directory; give a file path")
    # W_OK also fails on a read-only filesystem; X_OK is needed to create a file in the directory.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"-o {path}: cannot create files in {directory} (not writable)")
    if os.path.lexists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise UsageError(f"-o {path}: cannot read and write it (permission denied)")


def held_path(records: str) -> str:
    """Where --keep-order keeps the records it holds back (written to the file of records later)."""
    return os.path.abspath(records) + HELD_SUFFIX


def partial_path(output: str) -> str:
    """Where a Parquet output's records are written as JSONL while runs add to it."""
    return os.path.abspath(output) + PARTIAL_SUFFIX


def temp_prefix(output: str) -> str:
    """The start of every temporary name beside OUT, so that the next run on OUT finds its leftovers."""
    return f".{os.path.basename(output)}."


def _leftover_of(name: str, output_name: str) -> bool:
    """Whether `name` is .OUTPUT-NAME.<random>.gembulk-tmp; the random part has no dot, so the output
    name is told exactly (the leftovers of out.jsonl are not those of out.jsonl.x)."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    owner, dot, random = name[1 : -len(TEMP_SUFFIX)].rpartition(".")
    return bool(dot) and owner == output_name and bool(random) and random.replace("_", "").isalnum()


def remove_leftovers(output: str) -> int:
    """Delete what a killed run left beside OUT (compaction, --overwrite, conversion and stdin temp files,
    batch scratch folders, an old batch lock); call it holding OUT's lock. Returns how many were removed."""
    directory = os.path.dirname(os.path.abspath(output))
    name = os.path.basename(output)
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, name + LEGACY_BATCH_LOCK))
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        # The files beside OUT have their own temp files (a compaction of a Parquet OUT's records).
        if not (_leftover_of(entry.name, name) or _leftover_of(entry.name, name + PARTIAL_SUFFIX)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
    return removed


def remove_legacy_sidecar(output: str) -> None:
    """The job file of earlier versions is not needed any more: a completed run deletes it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.abspath(output) + LEGACY_SIDECAR)
