"""The resolved options of one `gembulk run`, built once at the CLI edge and passed down frozen."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gembulk.errors import UsageError

if TYPE_CHECKING:
    from gembulk.records import SharedPart
    from gembulk.retry import RetryPolicy
    from gembulk.scheduler import Limits
    from gembulk.shard import Shard

DEFAULT_MODEL = "gemini-2.5-flash"
# Enough in flight to hide multi-second model latency; the adaptive limit backs off from here when
# the account's quota is lower, and a 429 teaches the scheduler the real rate.
DEFAULT_CONCURRENCY = 32
DEFAULT_TIMEOUT = 300.0
# Batch jobs: 50,000 rows a job keeps each job's result index small (collection holds one job's keys at
# a time), lets one expired or failed job cost only its share, and still fits 5 million rows in the
# service's 100 concurrent batch jobs. The byte cap stays under the Files API's 2 GB per file.
DEFAULT_BATCH_MAX_ROWS = 50_000
DEFAULT_BATCH_MAX_BYTES = 1_900_000_000
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_POLL_MAX_INTERVAL = 30.0
# --keep-order: records held at most while a slower row is outstanding. At ~2,000 rows/s that is 5 s of
# a slow row before dispatch waits for it, for about 10,000 records' worth of memory (~5 MB at 500 bytes).
DEFAULT_ORDER_BUFFER = 10_000


class ProgressMode(enum.StrEnum):
    AUTO = "auto"
    BAR = "bar"
    PLAIN = "plain"
    JSON = "json"
    OFF = "off"


class Fallback(enum.StrEnum):
    """--fallback: what becomes of rows a batch did not answer (its job failed, or a transient error)."""

    NONE = "none"
    ONLINE = "online"  # finished online, in the same run


class ContextCache(enum.StrEnum):
    """--context-cache: whether the shared context goes into a cachedContents entry."""

    AUTO = "auto"  # when the model can cache it and the price table says it pays
    ON = "on"  # whenever the model can cache it
    OFF = "off"  # never: the shared parts go first in every request (implicit caching may still hit)


class BatchMode(enum.StrEnum):
    """What a Batch API run does."""

    RUN = "run"  # run --batch: submit (or adopt the jobs already submitted for OUT), wait, write OUT
    DETACH = "detach"  # run --batch --detach: submit, save the state file, exit
    WAIT = "wait"  # batch wait: poll the state file's jobs until they end, then write OUT
    FETCH = "fetch"  # batch fetch: write OUT if the jobs have ended, else exit 4


@dataclass(frozen=True)
class GenerationSettings:
    """Per-job request settings: one GenerateContentConfig shared by every row, or one request per batch line.

    A plain value: the SDK conversions are gembulk.client.request's generate_config and request_json.
    """

    system: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    json_schema: dict[str, Any] | None = None
    # The shared context (--context) of a request: sent as its first parts, or named as a cachedContents
    # entry, which then holds the system instruction too (the API refuses both in one request).
    shared: tuple[SharedPart, ...] = ()
    cached_content: str | None = None


@dataclass(frozen=True)
class BatchOptions:
    """Options of the Batch API executor (RunOptions.batch); None there means online."""

    mode: BatchMode = BatchMode.RUN
    max_rows: int = DEFAULT_BATCH_MAX_ROWS
    max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    poll_interval: float = DEFAULT_POLL_INTERVAL  # first wait between polls; doubles up to the cap
    poll_max_interval: float = DEFAULT_POLL_MAX_INTERVAL
    wait_timeout: float | None = None  # batch wait --timeout: exit 4 when the jobs run longer
    fallback_online: bool = False  # finish failed, expired, cancelled and transient-error rows online
    keep_files: bool = False  # keep the uploaded input and the result files after a fetch
    display_name: str | None = None  # job display name prefix (default: "gembulk <OUT name>")
    state_path: str | None = None  # wait/fetch: the state file whose jobs are collected


def _default_limits() -> Limits:
    # Imported on use: the command line's help and usage errors never load the scheduler (nor asyncio).
    from gembulk.scheduler import Limits

    return Limits()


def _default_retry() -> RetryPolicy:
    from gembulk.retry import RetryPolicy

    return RetryPolicy()


@dataclass(frozen=True)
class RunOptions:
    """Everything `run_job` needs; nothing below the CLI reads the environment."""

    input: str
    output: str = "-"
    input_format: str | None = None
    delimiter: str | None = None  # --delimiter (None: TAB for TSV, for CSV told from the header line)
    output_format: str | None = None
    template: str | None = None
    template_file: str | None = None
    prompt_column: str | None = None
    id_column: str | None = None
    model: str = DEFAULT_MODEL
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    json_schema_path: str | None = None
    limits: Limits = field(default_factory=_default_limits)
    retry: RetryPolicy = field(default_factory=_default_retry)
    timeout: float | None = DEFAULT_TIMEOUT
    api_key: str | None = None
    base_url: str | None = None
    progress: ProgressMode = ProgressMode.AUTO
    quiet: bool = False
    dry_run: bool = False
    overwrite: bool = False
    grace_period: float = 10.0
    batch: BatchOptions | None = None  # the Batch API executor instead of the online one
    stdin_copy: str | None = None  # with input "-": a kept copy of that stdin (batch wait/fetch)
    cache_path: str | None = None  # --cache: SQLite response cache shared by runs, modes and processes
    shard: Shard | None = None  # --shard K/N: only the rows whose id falls in this shard
    max_cost: float | None = None  # --max-cost USD: stop dispatching before the spend passes it
    prices_path: str | None = None  # --prices: a JSON price table layered over the shipped one
    fanout: tuple[str, ...] = ()  # several -m: every row runs on each of these models (model is the first)
    attach: tuple[str, ...] = ()  # --attach: columns whose values are media (path, URL or files/… name)
    inline_limit: int = 14 * 1024 * 1024  # --inline-limit: attachment bytes sent inline in one request
    downloads: int = 32  # --downloads: attachments fetched at once, ahead of the workers (default: -c)
    attach_root: str | None = None  # --attach-root: the folder local attachments are confined to
    # (None: the input file's folder, or the current directory for stdin)
    allow_private_urls: bool = False  # --allow-private-urls: URL attachments may reach non-public addresses
    max_download: int | None = None  # --max-download: largest URL attachment body (None: inline_limit)
    context_files: tuple[str, ...] = ()  # --context: files whose content goes before every row's prompt
    context_text: str | None = None  # --context-text: text that goes before every row's prompt
    context_cache: ContextCache = ContextCache.AUTO  # --context-cache
    keep_order: bool = False  # --keep-order: records in input order (row, then model)
    order_buffer: int = DEFAULT_ORDER_BUFFER  # --order-buffer: records held at most for --keep-order

    @property
    def has_context(self) -> bool:
        return bool(self.context_files) or bool(self.context_text)

    @property
    def models(self) -> tuple[str, ...]:
        return self.fanout or (self.model,)

    @property
    def download_limit(self) -> int:
        return self.inline_limit if self.max_download is None else self.max_download


@dataclass(frozen=True)
class CollectOptions:
    """`batch wait|fetch`: how to reach the API, how to poll, and overrides of what the submission said."""

    api_key: str | None
    base_url: str | None
    batch: BatchOptions
    fallback_online: bool | None = None  # None: as the submitting run said
    keep_files: bool | None = None  # None: as the submitting run said
    progress: ProgressMode = ProgressMode.AUTO
    quiet: bool = False


NO_API_KEY = "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) or pass --api-key-file PATH"


def require_api_key(key: str | None) -> str:
    if not key:
        raise UsageError(NO_API_KEY)
    return key


API_KEY_VISIBLE = (
    "--api-key on the command line is visible to every user of this machine (ps); set GEMINI_API_KEY, "
    "or use --api-key-file PATH"
)
_KEY_FILE_LIMIT = 64 * 1024  # a key is ~40 characters; more is the wrong file, not a key


def command_line_key(api_key: str | None, api_key_file: str | None) -> tuple[str | None, bool]:
    """The key given with --api-key VALUE, --api-key @PATH or --api-key-file PATH, and whether it was
    typed on the command line itself, where `ps` shows it to every user of the machine."""
    if api_key is not None and api_key_file is not None:
        raise UsageError("give --api-key or --api-key-file, not both")
    if api_key is not None and api_key.startswith("@"):
        return read_key_file(api_key[1:], "--api-key @"), False
    if api_key_file is not None:
        return read_key_file(api_key_file, "--api-key-file "), False
    return api_key, bool(api_key)


def read_key_file(path: str, flag: str) -> str:
    """The key in a file, whitespace stripped. Errors name the file, never what it holds."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_KEY_FILE_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"{flag}{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        key = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        key = ""
    if not key or len(data) > _KEY_FILE_LIMIT or any(char.isspace() for char in key):
        raise UsageError(f"{flag}{path}: does not hold one API key (put only the key in the file)")
    return key


def api_key_of(
    api_key: str | None,
    api_key_file: str | None,
    env: Mapping[str, str] = os.environ,
    warn: Callable[[str], None] | None = None,
) -> str | None:
    """The key from --api-key/--api-key-file or the environment; a key typed on the command line is
    warned about (`warn`, default: one line on stderr)."""
    key, visible = command_line_key(api_key, api_key_file)
    if visible:
        (warn or _warn)(f"gembulk: warning: {API_KEY_VISIBLE}")
    return resolve_api_key(key, env)


def _warn(text: str) -> None:
    print(text, file=sys.stderr)


def resolve_api_key(explicit: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    """--api-key, then GEMINI_API_KEY, then GOOGLE_API_KEY (whitespace stripped, as the SDK does)."""
    for value in (explicit, env.get("GEMINI_API_KEY"), env.get("GOOGLE_API_KEY")):
        if value and value.strip():
            return value.strip()
    return None


def resolve_base_url(explicit: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    """--base-url, then the SDK's own GOOGLE_GEMINI_BASE_URL; None means Google's endpoint."""
    value = explicit or env.get("GOOGLE_GEMINI_BASE_URL") or None
    if value is not None and not value.startswith(("http://", "https://")):
        raise UsageError(f"--base-url must start with http:// or https://, got {value!r}")
    return value


def check_positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise UsageError(f"{name} must be a positive number, got {value}")


def schema_summary(schema: dict[str, Any] | None) -> str | None:
    """A stable text form of the JSON schema, for the job fingerprint."""
    if schema is None:
        return None
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_size(name: str, text: str, *, allow_zero: bool = False) -> int:
    """A byte count such as 1900000000, 500MB, 1.9G (decimal units) or 14MiB (binary units)."""
    cleaned = text.strip().lower()
    number = cleaned.rstrip("kmgib")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        raise UsageError(
            f"{name}: expected a size such as 1900000000, 500MB, 1.9GB or 14MiB, got {text!r}"
        ) from None
    if value < (0 if allow_zero else 1):
        raise UsageError(f"{name} must be at least {0 if allow_zero else 1} byte, got {text!r}")
    return int(value)
