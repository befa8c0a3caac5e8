"""The fake's deterministic answers: text and JSON answers, the generation settings that shape them
(candidateCount, maxOutputTokens, stopSequences), usage metadata and stream chunks."""

from __future__ import annotations

import itertools
import json
from typing import Any
from xml.sax.saxutils import escape

from gembulk.fake.content import Prompt, Settings, count_tokens, expected_text, thoughts_tokens

# maxOutputTokens cuts the answer after this many characters per token (the fake's tokenizer).
_CHARS_PER_TOKEN = 4


def answer_text(prompt: Prompt, model: str) -> str:
    """The answer text: expected_text, or a JSON document when JSON output was asked for."""
    if prompt.mime == "application/json":
        if isinstance(prompt.schema, dict):
            value = _fake_value(prompt.schema, prompt.schema, prompt.user, "value", 0)
        else:
            value = {"answer": expected_text(prompt.user, model)}
        return json.dumps(value, ensure_ascii=False)
    if prompt.mime == "text/x.enum" and isinstance(prompt.schema, dict) and prompt.schema.get("enum"):
        return str(prompt.schema["enum"][0])
    if prompt.mime == "application/xml":
        return f"<answer>{escape(expected_text(prompt.user, model))}</answer>"
    if prompt.mime == "application/yaml":
        return f"answer: {json.dumps(expected_text(prompt.user, model), ensure_ascii=False)}"
    text = expected_text(prompt.user, model)
    if prompt.media:
        text += " " + " ".join(m.note() for m in prompt.media)
    return text


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON schema ["string", "null"]: take the first non-null type
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _fake_value(schema: Any, root: dict[str, Any], prompt: str, name: str, depth: int) -> Any:
    """A value that conforms to an OpenAPI-subset (uppercase) or JSON-schema (lowercase) schema."""
    if not isinstance(schema, dict) or depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key) if isinstance(target, dict) else None
        return _fake_value(target, root, prompt, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combo in ("anyOf", "any_of", "oneOf", "allOf"):
        options = schema.get(combo)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") in ("null", "NULL"))]
            return _fake_value((usable or options)[0], root, prompt, name, depth + 1)
    kind = _schema_type(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _fake_value(sub, root, prompt, key, depth + 1) for key, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or schema.get("min_items") or 1))
        return [_fake_value(schema.get("items"), root, prompt, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return _clamp(len(prompt), schema)
    if kind == "number":
        return _clamp(len(prompt) + 0.5, schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    return f"{name}: {prompt}"


def _clamp(value: float, schema: dict[str, Any]) -> Any:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and value < float(low):
        value = low
    if high is not None and value > float(high):
        value = high
    return value


def shaped(text: str, settings: Settings) -> tuple[str, str]:
    """The answer as the settings leave it, and its finishReason: cut before the first stop sequence
    (STOP, the sequence itself left out), then cut to maxOutputTokens (MAX_TOKENS)."""
    cuts = [text.find(s) for s in settings.stop_sequences if s in text]
    if cuts:
        text = text[: min(cuts)]
    limit = settings.max_output_tokens
    if limit is not None and text and count_tokens(text) > limit:
        return text[: limit * _CHARS_PER_TOKEN], "MAX_TOKENS"
    return text, "STOP"


def _usage(prompt: Prompt, candidates: int | None = None, thoughts: int | None = None) -> dict[str, Any]:
    # Key order follows the real wire order (protobuf field numbers); candidatesTokenCount is absent when
    # there is no answer text, cachedContentTokenCount when no cachedContent was used.
    tokens, cached = prompt.tokens, prompt.cached_tokens
    usage: dict[str, Any] = {"promptTokenCount": tokens}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = tokens + (candidates or 0) + (thoughts or 0)
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": tokens}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    return usage


_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


def _candidate(text: str, finish: str, index: int) -> dict[str, Any]:
    # A stop sequence that fires at once leaves `"content": {}` (live probe, 2026-08-27).
    content = {"parts": [{"text": text}], "role": "model"} if text else {}
    return {"content": content, "finishReason": finish, "index": index}


def _marked(prompt: Prompt, tail: dict[str, str]) -> dict[str, Any] | None:
    """The body for a prompt marker that replaces the answer, or None."""
    m = prompt.markers
    if m.block:
        return {"promptFeedback": {"blockReason": m.block}, "usageMetadata": _usage(prompt), **tail}
    if m.empty:
        return {"candidates": [], "usageMetadata": _usage(prompt), **tail}
    if m.safety:
        cand = {"content": {}, "finishReason": "SAFETY", "index": 0, "safetyRatings": _SAFETY_RATINGS}
        return {"candidates": [cand], "usageMetadata": _usage(prompt), **tail}
    if m.recitation:
        cand = {"finishReason": "RECITATION", "index": 0}
        return {"candidates": [cand], "usageMetadata": _usage(prompt), **tail}
    if m.max_tokens:  # thinking used the whole budget: no parts, no candidatesTokenCount
        cand = {"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}
        usage = _usage(prompt, None, prompt.tokens % 7 + 2)
        return {"candidates": [cand], "usageMetadata": usage, **tail}
    return None


def build_response(prompt: Prompt, model: str, rid: str) -> dict[str, Any]:
    """The 200 GenerateContentResponse for a prompt, markers applied (invalid/denied are the caller's).

    candidateCount answers that many identical candidates (index 0..n-1); candidatesTokenCount is their
    sum, as the real API counts it.
    """
    tail = _tail(model, rid)
    marked = _marked(prompt, tail)
    if marked is not None:
        return marked
    text, finish = shaped(answer_text(prompt, model), prompt.settings)
    count = prompt.settings.candidate_count
    candidates = [_candidate(text, finish, index) for index in range(count)]
    spent = count_tokens(text) * count if text else None
    usage = _usage(prompt, spent, thoughts_tokens(model, prompt.tokens))
    return {"candidates": candidates, "usageMetadata": usage, **tail}


def stream_chunks(prompt: Prompt, model: str, rid: str) -> list[dict[str, Any]]:
    """The SSE chunks of streamGenerateContent: the answer split in 2-3 pieces, finishReason on the last."""
    full = build_response(prompt, model, rid)
    cands = full.get("candidates")
    if not cands or len(cands) > 1 or not cands[0].get("content", {}).get("parts"):
        return [full]
    text = cands[0]["content"]["parts"][0]["text"]
    cut = (
        [0, len(text) // 3, 2 * len(text) // 3, len(text)]
        if len(text) >= 6
        else [0, len(text) // 2, len(text)]
    )
    pieces = [text[a:b] for a, b in itertools.pairwise(cut)]
    chunks = []
    for piece in pieces[:-1]:  # earlier chunks carry prompt-only usage, like the real stream
        cand = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
        chunks.append({"candidates": [cand], "usageMetadata": _usage(prompt), **_tail(model, rid)})
    last = {"content": {"parts": [{"text": pieces[-1]}], "role": "model"}, "index": 0}
    last = {"content": last["content"], "finishReason": cands[0]["finishReason"], "index": 0}
    chunks.append({"candidates": [last], "usageMetadata": full["usageMetadata"], **_tail(model, rid)})
    return chunks


def _tail(model: str, rid: str) -> dict[str, str]:
    return {"modelVersion": model, "responseId": rid}
