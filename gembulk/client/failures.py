"""SDK and transport exceptions turned into CallFailed: status, reason, RetryInfo delay, QuotaFailure."""

from __future__ import annotations

import json

import aiohttp
from google.genai import errors

from gembulk.records import CallFailed, QuotaViolation


def translate(exc: BaseException, *, api_key: str, timeout: float | None) -> BaseException:
    """Turn an SDK or transport exception into CallFailed; leave cancellation and bugs alone."""
    if isinstance(exc, errors.APIError):
        return call_failed_from_api_error(exc, api_key)
    if isinstance(exc, TimeoutError):
        return CallFailed("DEADLINE_EXCEEDED", f"no answer within {timeout:g} s", transport=True)
    if isinstance(exc, aiohttp.ClientError):
        return CallFailed("UNAVAILABLE", scrub(f"connection error: {exc!r}", api_key), transport=True)
    if isinstance(exc, json.JSONDecodeError):
        return CallFailed(
            "BAD_RESPONSE", "the server answered 200 with a body that is not JSON", transport=True
        )
    if isinstance(exc, OSError):
        return CallFailed("UNAVAILABLE", scrub(f"network error: {exc}", api_key), transport=True)
    return exc


def scrub(text: str, secret: str) -> str:
    """Never let the API key reach a record, a log line or an error message."""
    return text.replace(secret, "***") if secret else text


def call_failed_from_api_error(exc: errors.APIError, api_key: str = "") -> CallFailed:
    """Extract code, status, message, ErrorInfo reason, RetryInfo delay and QuotaFailure from an APIError."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    reason = None
    retry_delay = None
    violations: list[QuotaViolation] = []
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo"):
            reason = detail.get("reason")
        elif kind.endswith("google.rpc.RetryInfo"):
            retry_delay = parse_duration(detail.get("retryDelay"))
        elif kind.endswith("google.rpc.QuotaFailure"):
            for v in detail.get("violations") or []:
                if isinstance(v, dict) and v.get("quotaId"):
                    metric = str(v.get("quotaMetric") or "")
                    violations.append(
                        QuotaViolation(str(v["quotaId"]), _int_or_none(v.get("quotaValue")), metric)
                    )
    status = exc.status or error.get("status") or f"HTTP_{exc.code}"
    message = scrub(str(exc.message or error.get("message") or ""), api_key).strip()
    return CallFailed(
        str(status),
        message,
        code=exc.code,
        reason=reason,
        retry_delay=retry_delay,
        violations=tuple(violations),
    )


def parse_duration(value: object) -> float | None:
    """google.protobuf.Duration in JSON: "37s", "0.5s", "45.837906927s"."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
