"""Deterministic answers of the fake Gemini API: token counting, prompt markers and response bodies."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Markers are looked for only when "[[" occurs, so ordinary prompts never pay for the regex.
_MARKER_RE = re.compile(r"\[\[([a-z_]+)(?::([^\]]*))?\]\]")
_FAIL_CODES = frozenset({429, 500, 502, 503, 504})
# Models that report thoughtsTokenCount (2.0 models have no thinking, so they omit it, like the real API).
_THINKING_PREFIXES = ("gemini-2.5", "gemini-3", "gemini-flash", "gemini-pro")

INVALID_ARGUMENT_MESSAGE = "Request contains an invalid argument."
# What one media part adds to promptTokenCount (Gemini's count for an image up to 384 px).
MEDIA_TOKENS = 258
_MEDIA_PREFIXES = ("image/", "audio/", "video/", "text/", "application/pdf", "application/json")


def count_tokens(text: str) -> int:
    """The fake's tokenizer: one token per 4 UTF-8 bytes, at least 1 (used by countTokens, usage and TPM).

    Bytes, not characters: like a real tokenizer, it costs an accented letter, a CJK character or an
    emoji more than an ASCII letter, so a client's "four characters a token" guess is wrong by a
    script-dependent factor here too (CJK about 3x low), as it is against the real API.
    """
    return max(1, -(-len(text.encode("utf-8", "surrogatepass")) // 4))


def expected_text(prompt: str, model: str = "gemini-2.5-flash") -> str:
    """The answer generateContent gives for a plain text prompt (no JSON schema); markers stay in."""
    return f"echo: {prompt}"


def thoughts_tokens(model: str, prompt_tokens: int) -> int | None:
    """thoughtsTokenCount for thinking models (2.5, 3.x, *-latest); None (omitted) for 2.0 models."""
    return prompt_tokens % 7 + 2 if model.startswith(_THINKING_PREFIXES) else None


def response_id() -> str:
    """A 23-character base64url token, shaped like the real responseId."""
    return base64.urlsafe_b64encode(os.urandom(18)).decode()[:23]


@dataclass(frozen=True, slots=True)
class Markers:
    """Test markers found in a prompt (the list is in the gembulk.fake package docstring)."""

    block: str | None = None
    safety: bool = False
    recitation: bool = False
    max_tokens: bool = False
    empty: bool = False
    invalid: bool = False
    denied: bool = False
    fail_code: int = 0
    fail_times: int = 0
    drop_times: int = 0
    sleep: float = 0.0


NO_MARKERS = Markers()


def parse_markers(text: str) -> Markers:
    if "[[" not in text:
        return NO_MARKERS
    found: dict[str, Any] = {}
    for name, arg in _MARKER_RE.findall(text):
        if name == "block":
            found["block"] = arg or "PROHIBITED_CONTENT"
        elif name in ("safety", "recitation", "max_tokens", "empty", "invalid", "denied"):
            found[name] = True
        elif name == "fail":
            code, _, times = arg.partition(":")
            if code.isdigit() and int(code) in _FAIL_CODES:
                found["fail_code"], found["fail_times"] = int(code), int(times) if times.isdigit() else 1
        elif name == "drop":
            found["drop_times"] = int(arg) if arg.isdigit() else 1
        elif name == "sleep":
            with contextlib.suppress(ValueError):
                found["sleep"] = max(0.0, float(arg))
    return Markers(**found) if found else NO_MARKERS


class BadRequest(ValueError):
    """The request cannot be served; the message is the real API's text."""


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    # protobuf-JSON accepts both spellings, and the SDK sends some nested objects in snake_case.
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _texts(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if not isinstance(parts, list):
        return ""
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


@dataclass(frozen=True, slots=True)
class Media:
    """A media part of a request: inline bytes (size and hash known), or a Files API reference."""

    kind: str  # "inline" or "file"
    mime_type: str
    size: int = 0
    sha256: str = ""  # hex digest of the bytes; for a file, filled in once the file store is asked
    file_id: str | None = None

    def note(self) -> str:
        return media_note(self.mime_type, self.size, self.sha256)


def media_note(mime_type: str, size: int, sha256: str) -> str:
    """How an answer acknowledges a media part: tests check the bytes arrived by their hash."""
    return f"[{mime_type} {size} bytes sha256:{sha256[:12]}]"


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the fake reads from a GenerateContentRequest."""

    user: str  # concatenation (no separator) of all text parts of all contents
    system: str
    tokens: int  # count_tokens(system + user) + MEDIA_TOKENS per media part: promptTokenCount and TPM
    markers: Markers
    mime: str | None = None
    schema: Any = None
    media: tuple[Media, ...] = ()


def _media_parts(contents: list[Any]) -> tuple[Media, ...]:
    """inlineData / fileData parts (either spelling); BadRequest with the real API's words when bad."""
    found: list[Media] = []
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            inline = _field(part, "inlineData", "inline_data")
            if isinstance(inline, dict):
                mime = str(_field(inline, "mimeType", "mime_type") or "")
                _check_media_type(mime)
                try:
                    data = _bytes_field(str(inline.get("data") or ""))
                except (binascii.Error, ValueError):
                    raise BadRequest(
                        "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), "
                        "Base64 decoding failed"
                    ) from None
                found.append(Media("inline", mime, len(data), hashlib.sha256(data).hexdigest()))
            file_data = _field(part, "fileData", "file_data")
            if isinstance(file_data, dict):
                uri = str(_field(file_data, "fileUri", "file_uri") or "")
                mime = str(_field(file_data, "mimeType", "mime_type") or "")
                file_id = uri.rpartition("/files/")[2] if "/files/" in uri else uri.removeprefix("files/")
                found.append(Media("file", mime, file_id=file_id))
    return tuple(found)


def _bytes_field(text: str) -> bytes:
    # protobuf-JSON bytes: standard or URL-safe base64 (the SDK sends URL-safe), padding optional.
    standard = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)


def _check_media_type(mime: str) -> None:
    if not mime.startswith(_MEDIA_PREFIXES):
        raise BadRequest(f"Unsupported MIME type: {mime}")


def parse_request(body: Any) -> Prompt:
    """Read a GenerateContentRequest (camelCase or snake_case); BadRequest when it has no contents."""
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
    user = "".join(_texts(c) for c in contents)
    media = _media_parts(contents)
    system = _texts(_field(body, "systemInstruction", "system_instruction"))
    config = _field(body, "generationConfig", "generation_config")
    mime = schema = None
    if isinstance(config, dict):
        mime = _field(config, "responseMimeType", "response_mime_type")
        schema = _field(config, "responseJsonSchema", "response_json_schema")
        if schema is None:
            schema = _field(config, "responseSchema", "response_schema")
    tokens = count_tokens(system + user) + MEDIA_TOKENS * len(media)
    return Prompt(user, system, tokens, parse_markers(user), mime, schema, media)


def with_files(prompt: Prompt, lookup: Callable[[str], tuple[str, bytes] | None]) -> Prompt | str:
    """The prompt with its file references resolved to the stored bytes (mime type, size, hash), or the
    real API's message for a file it does not hold. `lookup(file_id)` gives (mime type, bytes)."""
    if not any(m.kind == "file" for m in prompt.media):
        return prompt
    resolved = []
    for media in prompt.media:
        if media.kind == "file":
            found = lookup(media.file_id or "")
            if found is None:
                return FILE_DENIED.format(file_id=media.file_id)
            mime, data = found
            media = Media(
                "file", media.mime_type or mime, len(data), hashlib.sha256(data).hexdigest(), media.file_id
            )
        resolved.append(media)
    return dataclasses.replace(prompt, media=tuple(resolved))


FILE_DENIED = "You do not have permission to access the File {file_id} or it may not exist."


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
        count = max(1, int(_field(schema, "minItems", "min_items") or 1))
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


def _usage(prompt_tokens: int, candidates: int | None = None, thoughts: int | None = None) -> dict[str, Any]:
    # Key order follows the real wire order; candidatesTokenCount is absent when there is no answer text.
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt_tokens + (candidates or 0) + (thoughts or 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    return usage


_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


def build_response(prompt: Prompt, model: str, rid: str) -> dict[str, Any]:
    """The 200 GenerateContentResponse for a prompt, markers applied (invalid/denied are the caller's)."""
    m = prompt.markers
    tail = _tail(model, rid)
    if m.block:
        return {"promptFeedback": {"blockReason": m.block}, "usageMetadata": _usage(prompt.tokens), **tail}
    if m.empty:
        return {"candidates": [], "usageMetadata": _usage(prompt.tokens), **tail}
    if m.safety:
        cand = {"content": {}, "finishReason": "SAFETY", "index": 0, "safetyRatings": _SAFETY_RATINGS}
        return {"candidates": [cand], "usageMetadata": _usage(prompt.tokens), **tail}
    if m.recitation:
        cand = {"finishReason": "RECITATION", "index": 0}
        return {"candidates": [cand], "usageMetadata": _usage(prompt.tokens), **tail}
    thoughts = thoughts_tokens(model, prompt.tokens)
    if m.max_tokens:  # thinking used the whole budget: no parts, no candidatesTokenCount
        cand = {"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}
        usage = _usage(prompt.tokens, None, prompt.tokens % 7 + 2)
        return {"candidates": [cand], "usageMetadata": usage, **tail}
    text = answer_text(prompt, model)
    cand = {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}
    return {
        "candidates": [cand],
        "usageMetadata": _usage(prompt.tokens, count_tokens(text), thoughts),
        **tail,
    }


def stream_chunks(prompt: Prompt, model: str, rid: str) -> list[dict[str, Any]]:
    """The SSE chunks of streamGenerateContent: the answer split in 2-3 pieces, finishReason on the last."""
    full = build_response(prompt, model, rid)
    cands = full.get("candidates")
    if not cands or cands[0].get("finishReason") != "STOP":
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
        chunks.append({"candidates": [cand], "usageMetadata": _usage(prompt.tokens), **_tail(model, rid)})
    last = {"content": {"parts": [{"text": pieces[-1]}], "role": "model"}, "finishReason": "STOP", "index": 0}
    chunks.append({"candidates": [last], "usageMetadata": full["usageMetadata"], **_tail(model, rid)})
    return chunks


def _tail(model: str, rid: str) -> dict[str, str]:
    return {"modelVersion": model, "responseId": rid}
