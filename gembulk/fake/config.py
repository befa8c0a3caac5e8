"""The fake API's configuration: FakeConfig and its live updates (the built-in models are in models.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gembulk.fake.models import BUILTIN_MODELS

__all__ = ["BUILTIN_MODELS", "FakeConfig", "updated_config"]


@dataclass
class FakeConfig:
    """Behaviour of the fake; not frozen because POST /_fake/config replaces it with an edited copy."""

    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0  # seconds added to each generateContent/countTokens
    jitter: float = 0.0  # uniform extra 0..jitter seconds
    rpm: int = 0  # requests per window per API key and model (0 = unlimited)
    tpm: int = 0  # prompt tokens per window per API key and model
    rpd: int = 0  # requests per "day" per API key and model
    window: float = 60.0  # length of the rpm/tpm sliding window
    day: float = 86400.0  # length of the rpd sliding window
    error_rate: float = 0.0  # share of generateContent calls failing: 500, 503 or dropped, evenly
    api_error_rate: float = 0.0  # share of Files/Batch API calls (not upload chunks) failing: 500 or 503
    bad_keys: tuple[str, ...] = ()  # API keys answered with 400 API_KEY_INVALID
    batch_pending: float = 1.0  # seconds a batch stays PENDING
    batch_running: float = 2.0  # then RUNNING, then it ends
    seed: int = 0  # for the fault RNG and the result-file shuffle
    models: tuple[str, ...] = ()  # accepted besides BUILTIN_MODELS
    lenient: bool = False  # accept what the real API refuses (no request validation), as before
    file_processing: float = 1.0  # seconds an uploaded video stays PROCESSING


_DEFAULTS = FakeConfig()
_FIELDS = {f.name for f in dataclasses.fields(FakeConfig)}


def updated_config(config: FakeConfig, updates: Any) -> FakeConfig:
    """A copy of config with JSON updates applied (lists become tuples); ValueError on bad input."""
    if not isinstance(updates, dict):
        raise ValueError("expected a JSON object of FakeConfig fields")
    unknown = sorted(set(updates) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown FakeConfig fields: {unknown}")
    changes = {}
    for name, value in updates.items():
        default = getattr(_DEFAULTS, name)
        if isinstance(default, tuple):
            changes[name] = tuple(str(v) for v in (value if isinstance(value, list | tuple) else [value]))
        else:
            changes[name] = type(default)(value)
    for rate in ("error_rate", "api_error_rate"):
        if not 0.0 <= changes.get(rate, getattr(config, rate)) <= 1.0:
            raise ValueError(f"{rate} must be between 0 and 1")
    return dataclasses.replace(config, **changes)
