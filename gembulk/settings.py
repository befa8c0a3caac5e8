"""The resolved options of one `gembulk run`, built once at the CLI edge and passed down frozen."""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gembulk.client import GenerationSettings
from gembulk.errors import UsageError
from gembulk.retry import RetryPolicy
from gembulk.scheduler import Limits

DEFAULT_MODEL = "gemini-2.5-flash"
# Enough in flight to hide multi-second model latency; the adaptive limit backs off from here when
# the account's quota is lower, and a 429 teaches the scheduler the real rate.
DEFAULT_CONCURRENCY = 32
DEFAULT_TIMEOUT = 300.0


class ProgressMode(enum.StrEnum):
    AUTO = "auto"
    BAR = "bar"
    PLAIN = "plain"
    JSON = "json"
    OFF = "off"


@dataclass(frozen=True)
class RunOptions:
    """Everything `run_job` needs; nothing below the CLI reads the environment."""

    input: str
    output: str = "-"
    input_format: str | None = None
    output_format: str | None = None
    template: str | None = None
    template_file: str | None = None
    prompt_column: str | None = None
    id_column: str | None = None
    model: str = DEFAULT_MODEL
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    json_schema_path: str | None = None
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = DEFAULT_TIMEOUT
    api_key: str | None = None
    base_url: str | None = None
    progress: ProgressMode = ProgressMode.AUTO
    quiet: bool = False
    dry_run: bool = False
    overwrite: bool = False
    grace_period: float = 10.0


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
