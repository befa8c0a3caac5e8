"""Batch result files: lines indexed by key (never by position), and each line turned into an Outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any

from gembulk.client import outcome_from_json
from gembulk.context.caches import is_cache_gone
from gembulk.records import CallFailed, Outcome, RowError
from gembulk.retry import Verdict, classify

# google.rpc.Code: per-line errors in a result file carry these numeric gRPC codes (3, not 400).
GRPC_STATUS = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
# The HTTP code Google's own gateway maps each gRPC code to, so a batch record's error.code means
# the same as an online one (INVALID_ARGUMENT is 400 in both).
GRPC_TO_HTTP = {
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}

# Statuses of rows the batch itself did not answer (the job ended early, or its results miss the key).
MISSING = "BATCH_MISSING_RESULT"
DUPLICATE = "BATCH_DUPLICATE_RESULT"
NOT_SUBMITTED = "BATCH_NOT_SUBMITTED"


@dataclass
class ResultIndex:
    """Byte offset of each key's line in one downloaded result file; only offsets are held."""

    path: str
    offsets: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)  # key -> number of lines (> 1)
    unkeyed: int = 0  # lines without a key: unparsable, or an error for a line the service could not read

    @property
    def keys(self) -> int:
        return len(self.offsets) + len(self.duplicates)


def _key_of(data: bytes) -> str | None:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    key = value.get("key") if isinstance(value, dict) else None
    return key if isinstance(key, str) else None


def index_results(path: str) -> ResultIndex:
    """Read a result file once and note where each key's line starts (blocking: run it in a thread)."""
    index = ResultIndex(path)
    offsets, duplicates = index.offsets, index.duplicates
    with open(path, "rb") as handle:
        offset = 0
        for line in handle:
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            key = _key_of(line)
            if key is None:
                index.unkeyed += 1
            elif key in duplicates:
                duplicates[key] += 1
            elif key in offsets:
                del offsets[key]
                duplicates[key] = 2
            else:
                offsets[key] = start
    return index


def read_line(handle: IO[bytes], offset: int) -> dict[str, Any]:
    handle.seek(offset)
    value = json.loads(handle.readline())
    assert isinstance(value, dict)  # index_results only records objects with a key
    return value


def row_error(error: Any) -> RowError:
    """A per-line google.rpc.Status as a RowError: HTTP-equivalent code, the line's own status string."""
    if not isinstance(error, dict):
        return RowError("BATCH_ERROR", f"the batch answered this row with an error: {error!r}")
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) else None
    status = error.get("status")
    if code is not None and code < 100:  # a gRPC code
        status = status or GRPC_STATUS.get(code, f"GRPC_{code}")
        code = GRPC_TO_HTTP.get(code, 500)
    message = str(error.get("message") or "").strip() or "the batch answered this row with an error"
    return RowError(str(status or (f"HTTP_{code}" if code else "BATCH_ERROR")), message, code)


@dataclass(frozen=True)
class LineResult:
    """A row's outcome from the batch, and whether the online fallback may finish it instead."""

    outcome: Outcome
    retry_online: bool


def from_line(line: dict[str, Any], *, parse_json: bool) -> LineResult:
    """Classify one result line with the online rules: a response as an answer, an error as a RowError.

    Only a transient line error (429, 5xx, deadline) or a context cache gone may go to the online
    fallback; INVALID_ARGUMENT and other permanent errors, and content failures such as a blocked prompt,
    would fail online too.
    """
    if "response" in line and line["response"] is not None:
        return LineResult(outcome_from_json(line["response"], parse_json=parse_json), False)
    error = row_error(line.get("error"))
    failure = CallFailed(error.status, error.message, code=error.code)
    # A line whose context cache was gone (a job that outlived it) is finished online, where it is recreated.
    retry = classify(failure) is Verdict.RETRY or is_cache_gone(failure)
    return LineResult(Outcome(text=None, error=error), retry)


def not_answered(status: str, message: str) -> LineResult:
    """A row the batch did not answer; the online fallback may finish it."""
    return LineResult(Outcome(text=None, error=RowError(status, message)), True)
