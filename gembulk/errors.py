"""The one error tree of gembulk and the exit codes it maps to at the CLI edge.

    GembulkError                      exit 2 unless a subclass says otherwise
    ├── UsageError                    bad options or option combinations (exit 2)
    ├── InputError                    unreadable or malformed input; names file and line (exit 2)
    ├── TemplateError                 a template that does not fit the input's columns (exit 2)
    ├── OutputConflictError           an existing output belongs to another job (exit 2)
    ├── FatalAPIError                 the API refuses the whole job: bad key, denied, unknown model,
    │                                 per-day quota (exit 3, finished rows kept)
    ├── BatchError                    a Batch API job that cannot be used (exit 3)
    ├── StateFileError                a batch state file that is missing, corrupt or belongs to
    │                                 another job or input (exit 2)
    ├── OutputWriteError              OUT cannot be written any more: disk full, quota, I/O error,
    │                                 permission taken away (exit 3, what reached the disk kept)
    ├── OutputClosedError             the reader of stdout (or of an -o pipe) went away (exit 141)
    └── NotReadyError                 a batch job that has not finished yet, a wait that timed out,
                                      or another gembulk working on the same output (exit 4)

Per-row failures are not exceptions: they become records with an ``error`` object.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Documented process exit codes."""

    OK = 0
    ROWS_FAILED = 1
    USAGE = 2
    FATAL_API = 3
    NOT_READY = 4
    INTERRUPTED = 130
    OUTPUT_CLOSED = 141  # what a shell reports for a tool ended by SIGPIPE (128 + 13)


class GembulkError(Exception):
    """Base of every error gembulk reports to a person as one line."""

    exit_code: ExitCode = ExitCode.USAGE
    silent = False  # True: the exit code says it all, no error line is printed

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(GembulkError):
    """Options that cannot work together or have impossible values."""


class InputError(GembulkError):
    """The input cannot be read or parsed; the message names the file and line."""


class TemplateError(GembulkError):
    """The prompt template is malformed or names a column the input does not have."""


class OutputConflictError(GembulkError):
    """The output file exists and belongs to a different job (input, template or model)."""


class FatalAPIError(GembulkError):
    """The API refused in a way no retry can fix; the run stops and keeps finished rows."""

    exit_code = ExitCode.FATAL_API


class BatchError(GembulkError):
    """A Batch API job cannot be used (not found, or refused by the service)."""

    exit_code = ExitCode.FATAL_API


class StateFileError(GembulkError):
    """A batch state file is missing, unreadable, or was written for another job or input (exit 2)."""


class OutputWriteError(GembulkError):
    """Writing OUT failed mid-run (ENOSPC, EDQUOT, EIO, EROFS, EACCES …): dispatching stops, what reached
    the disk is kept, and the same command finishes the job once the cause is fixed."""

    exit_code = ExitCode.FATAL_API

    def __init__(self, path: str, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(
            f"cannot write {path}: {reason}",
            hint="fix that (free space, permissions) and run the same command again: the rows whose "
            "records reached the file are not sent again",
        )
        self.path = path
        self.errno = error.errno


class OutputClosedError(GembulkError):
    """Whoever read our stdout (or the pipe -o names) went away, e.g. `| head`: nothing more can be
    written, so nothing more is sent; like a tool ended by SIGPIPE, the exit code (141) says it."""

    exit_code = ExitCode.OUTPUT_CLOSED
    silent = True


class NotReadyError(GembulkError):
    """A batch job is still running, a wait timed out, or the output is locked by another gembulk."""

    exit_code = ExitCode.NOT_READY
