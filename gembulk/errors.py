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


class GembulkError(Exception):
    """Base of every error gembulk reports to a person as one line."""

    exit_code: ExitCode = ExitCode.USAGE

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


class NotReadyError(GembulkError):
    """A batch job is still running, a wait timed out, or the output is locked by another gembulk."""

    exit_code = ExitCode.NOT_READY
