"""Value types that cross module boundaries: input rows, prompt requests, per-row outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINGERPRINT_DIGITS = 16  # hex digits of the request digest (requestkey.py) a record carries: 64 bits


@dataclass(frozen=True, slots=True)
class InputRow:
    """One data row of the input, with the id it will carry into its record."""

    id: str
    fields: dict[str, Any]
    line: int  # 1-based physical line in the input where the row starts (for error messages)
    index: int  # 1-based data-row number


@dataclass(frozen=True, slots=True)
class Attachment:
    """One media reference from an `--attach` column, as the row gave it (nothing read or fetched yet)."""

    kind: str  # "path" (a local file), "url" (http or https), "file" (a Files API name, "files/…"), or
    # "scheme" (a URL of another scheme, file: or ftp: …: refused, never read as a path)
    value: str  # the absolute path (links resolved), the URL or the file name
    column: str
    mime_type: str | None = None  # from the extension; a URL's answer may tell better
    root: str | None = None  # a path's attachment folder: the file is read only from inside it

    def describe(self) -> str:
        return f"{self.column} {self.value}"


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An attachment ready to send: inline bytes, or the URI of a file the Files API holds."""

    mime_type: str
    data: bytes | None = None
    file_uri: str | None = None


@dataclass(frozen=True, slots=True)
class SharedPart:
    """One part of the shared context (--context, --context-text), sent before every row's own parts:
    text, or a medium (inline bytes or an uploaded file)."""

    text: str | None = None
    media: MediaPart | None = None


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """A rendered prompt ready to be sent: the text plus the row it came from.

    `attachments` are the row's media references; the media stage turns them into `media` parts
    just before the request is sent, so bytes are held only while a request is in flight.
    `request_key` is the SHA-256 of the canonical request (gembulk.requestkey): the response cache's key,
    and its first 16 hex digits are the record's fingerprint. None for a row that is never sent.
    """

    row: InputRow
    prompt: str
    model: str
    attachments: tuple[Attachment, ...] = ()
    media: tuple[MediaPart, ...] = ()
    request_key: str | None = None
    # Its place among the records this run writes (the request pass numbers them in input order, row
    # then model): --keep-order writes records in this order. -1: not numbered.
    seq: int = -1

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def fingerprint(self) -> str | None:
        return None if self.request_key is None else self.request_key[:FINGERPRINT_DIGITS]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer (None from the API is counted as 0). `cached_tokens` are the part of
    `prompt_tokens` read from a context cache (usageMetadata.cachedContentTokenCount)."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    thoughts_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "thoughts_tokens": self.thoughts_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """A model's token limits (None: not known) and where they were read: models.get, or the shipped table."""

    input_tokens: int | None
    output_tokens: int | None
    source: str


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row failed: HTTP code (None when no HTTP answer), a status name, and a message."""

    status: str
    message: str
    code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "message": self.message}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one request: exactly one of ``text`` and ``error`` is set."""

    text: str | None
    error: RowError | None
    finish_reason: str | None = None
    usage: Usage | None = None
    model_version: str | None = None
    attempts: int = 1
    parsed: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One entry of a 429's google.rpc.QuotaFailure: which quota, and its limit when the server says.

    Real ids and metrics: quotaId
    `GenerateRequestsPerMinutePerProjectPerModel[-FreeTier]`, `GenerateRequestsPerDayPerProjectPerModel`,
    `GenerateContentInputTokensPerModelPerMinute[-FreeTier]`; quotaMetric
    `generativelanguage.googleapis.com/generate_content_{free,paid}_tier_{requests,input_token_count}`.
    The period is only in the id; what is counted is in both, and the metric is read first.
    """

    quota_id: str
    limit: int | None = None
    metric: str = ""

    @property
    def per_day(self) -> bool:
        return "PerDay" in self.quota_id

    @property
    def per_minute(self) -> bool:
        return "PerMinute" in self.quota_id

    @property
    def tokens(self) -> bool:
        """An input-token quota (TPM); otherwise a request quota."""
        metric = self.metric.rsplit("/", 1)[-1]
        if metric:
            return "token" in metric
        return "Token" in self.quota_id


class CallFailed(Exception):
    """A request got no usable answer: an HTTP error, a transport fault or a timeout.

    It carries the facts only (the client module extracts them from the SDK's exceptions);
    the retry module decides what they mean.
    """

    def __init__(
        self,
        status: str,
        message: str,
        *,
        code: int | None = None,
        reason: str | None = None,
        retry_delay: float | None = None,
        violations: tuple[QuotaViolation, ...] = (),
        transport: bool = False,
    ) -> None:
        super().__init__(f"{code or ''} {status}: {message}".strip())
        self.status = status
        self.message = message
        self.code = code
        self.reason = reason  # google.rpc.ErrorInfo reason, e.g. API_KEY_INVALID
        self.retry_delay = retry_delay  # seconds, from google.rpc.RetryInfo
        self.violations = violations
        self.transport = transport  # no HTTP answer at all (connection dropped, refused, timed out)

    def to_row_error(self) -> RowError:
        return RowError(status=self.status, message=self.message, code=self.code)


class AttachmentFailed(Exception):
    """This row's media could not be had (a URL that failed or was blocked, an upload refused): a failed
    row, not a failed run."""

    def __init__(self, error: RowError) -> None:
        super().__init__(error.message)
        self.error = error


# A record's own keys. An input field with one of these names is never dropped: it is kept under
# "input" (all of them, whether or not this record has that key, so every record of a run has one shape),
# except the field that supplied the row id, which is the record's id.
RECORD_KEYS = (
    "id",
    "response",
    "error",
    "finish_reason",
    "usage",
    "model",
    "parsed",
    "mode",
    "cached",
    "fingerprint",
    "input",
)
RESERVED_KEYS = frozenset(RECORD_KEYS)


def build_record(
    row: InputRow,
    model: str,
    outcome: Outcome,
    *,
    with_parsed: bool = False,
    mode: str | None = None,
    fingerprint: str | None = None,
    id_column: str | None = None,
) -> dict[str, Any]:
    """The output record of one row: the contract's fields first, then the input row's own fields.

    Carrying the input fields along lets runs chain: `gembulk run a.csv | gembulk run - -t "... {response}"`;
    the first stage's own record fields then ride along under "input".
    """
    record: dict[str, Any] = {
        "id": row.id,
        "response": outcome.text,
        "error": outcome.error.to_json() if outcome.error else None,
        "finish_reason": outcome.finish_reason,
        "usage": outcome.usage.to_json() if outcome.usage else None,
        "model": model,
    }
    if with_parsed:
        record["parsed"] = outcome.parsed
    if mode is not None:
        record["mode"] = mode
    if outcome.extra.get("cached"):
        record["cached"] = True
    record["fingerprint"] = fingerprint
    moved: dict[str, Any] | None = None
    for key, value in row.fields.items():
        if key not in RESERVED_KEYS:
            record[key] = value
        elif key != id_column:
            if moved is None:
                moved = {}
            moved[key] = value
    if moved is not None:
        record["input"] = moved
    return record
