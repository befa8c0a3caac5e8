"""An answer classified: text (parsed JSON with a schema), or a row failure that names its reason."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from google.genai import models as _sdk_models
from google.genai import types

from gembulk.records import Outcome, RowError, Usage

# A finish reason that still comes with a usable answer.
OK_FINISH_REASONS = frozenset({"STOP", "MAX_TOKENS", "FINISH_REASON_UNSPECIFIED"})


def usage_from(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage | None:
    if metadata is None:
        return None
    return Usage(
        prompt_tokens=metadata.prompt_token_count or 0,
        output_tokens=metadata.candidates_token_count or 0,
        thoughts_tokens=metadata.thoughts_token_count or 0,
        total_tokens=metadata.total_token_count or 0,
        cached_tokens=metadata.cached_content_token_count or 0,
    )


def enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def outcome_from_response(response: types.GenerateContentResponse, *, parse_json: bool) -> Outcome:
    """Classify an HTTP-200 answer: text, or a row failure that names its reason (never retried).

    The SDK returns `text=None` without raising for blocked prompts, SAFETY/RECITATION finishes,
    empty candidate lists and thinking that used up the token budget, so every case is checked here.
    """
    usage = usage_from(response.usage_metadata)
    version = response.model_version
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = enum_name(feedback.block_reason)
        return _failed(f"BLOCKED_{reason}", f"the prompt was blocked (blockReason {reason})", usage, version)
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None:
        return _failed("EMPTY_RESPONSE", "the answer has no candidates", usage, version)
    finish = enum_name(candidate.finish_reason)
    text = response.text
    if finish is not None and finish not in OK_FINISH_REASONS:
        return _failed(finish, f"the answer was withheld (finishReason {finish})", usage, version, finish)
    if not text:
        why = (
            "the token budget ran out before any text" if finish == "MAX_TOKENS" else "the answer has no text"
        )
        return _failed(finish or "EMPTY_RESPONSE", why, usage, version, finish)
    parsed = None
    if parse_json:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"the answer is not valid JSON ({exc.msg}): {text[:200]}"
            return _failed("INVALID_JSON", message, usage, version, finish)
    return Outcome(
        text=text, error=None, finish_reason=finish, usage=usage, model_version=version, parsed=parsed
    )


def outcome_from_json(raw: Any, *, parse_json: bool) -> Outcome:
    """Classify a GenerateContentResponse given as proto-JSON (a batch result line) exactly as online.

    The SDK's own wire-to-type conversion is used (the private `_GenerateContentResponse_from_mldev`
    that generate_content applies, then `_from_response`, which drops fields this SDK does not know),
    so camelCase keys, unknown fields and enum names are read the same way as for an online answer.
    """
    if not isinstance(raw, dict):
        return _failed("BAD_RESULT", "the batch result line has no response object", None, None)
    convert = getattr(_sdk_models, "_GenerateContentResponse_from_mldev", None)
    try:
        converted = convert(raw) if convert is not None else dict(raw)
        response = types.GenerateContentResponse._from_response(response=converted, kwargs={})
    except (pydantic.ValidationError, TypeError, ValueError) as exc:
        message = f"the batch result is not a GenerateContentResponse: {str(exc).splitlines()[0]}"
        return _failed("BAD_RESULT", message, None, None)
    return outcome_from_response(response, parse_json=parse_json)


def _failed(
    status: str, message: str, usage: Usage | None, version: str | None, finish: str | None = None
) -> Outcome:
    return Outcome(
        text=None,
        error=RowError(status=status, message=message),
        finish_reason=finish,
        usage=usage,
        model_version=version,
    )
