"""What the fake reads from a GenerateContentRequest: token counts, prompt markers, media and settings."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gembulk.fake.validate import decode_bytes

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


def _parts(content: Any) -> list[Any]:
    """A content's parts; a single part stands for a one-element list, as protobuf JSON reads it."""
    parts = content.get("parts") if isinstance(content, dict) else None
    return [parts] if isinstance(parts, dict) else parts if isinstance(parts, list) else []


def _texts(content: Any) -> str:
    return "".join(
        p["text"] for p in _parts(content) if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


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
class Settings:
    """The generation settings that change the shape of an answer."""

    candidate_count: int = 1
    max_output_tokens: int | None = None
    stop_sequences: tuple[str, ...] = ()


DEFAULT_SETTINGS = Settings()


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the fake reads from a GenerateContentRequest."""

    user: str  # concatenation (no separator) of all text parts of all contents
    system: str
    tokens: int  # count_tokens(system + user) + MEDIA_TOKENS per media part (+ cached): promptTokenCount, TPM
    markers: Markers
    mime: str | None = None
    schema: Any = None
    media: tuple[Media, ...] = ()
    settings: Settings = DEFAULT_SETTINGS
    cached_tokens: int = 0  # tokens of the cachedContent the request names (counted in `tokens` too)
    cached_content: str | None = None  # the cachedContent name, as the request gave it


def _media_parts(contents: list[Any]) -> tuple[Media, ...]:
    """inlineData / fileData parts (either spelling); BadRequest with the real API's words when bad."""
    found: list[Media] = []
    for content in contents:
        for part in _parts(content):
            if not isinstance(part, dict):
                continue
            inline = _field(part, "inlineData", "inline_data")
            if isinstance(inline, dict):
                mime = str(_field(inline, "mimeType", "mime_type") or "")
                _check_media_type(mime)
                try:
                    data = decode_bytes(str(inline.get("data") or ""))
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


def _check_media_type(mime: str) -> None:
    if not mime.startswith(_MEDIA_PREFIXES):
        raise BadRequest(f"Unsupported MIME type: {mime}")


def parse_request(body: Any) -> Prompt:
    """Read a GenerateContentRequest (camelCase or snake_case); BadRequest when it has no contents."""
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    contents = body.get("contents")
    if isinstance(contents, dict):  # protobuf JSON reads a single value as a one-element list
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
    user = "".join(_texts(c) for c in contents)
    media = _media_parts(contents)
    system = _texts(_field(body, "systemInstruction", "system_instruction"))
    config = _field(body, "generationConfig", "generation_config")
    mime = schema = None
    settings = DEFAULT_SETTINGS
    if isinstance(config, dict):
        mime = _field(config, "responseMimeType", "response_mime_type")
        schema = _field(config, "responseJsonSchema", "response_json_schema")
        if schema is None:
            schema = _field(config, "responseSchema", "response_schema")
        settings = _settings(config)
    tokens = count_tokens(system + user) + MEDIA_TOKENS * len(media)
    cached = _field(body, "cachedContent", "cached_content")
    cached = str(cached) if cached else None
    return Prompt(user, system, tokens, parse_markers(user), mime, schema, media, settings, 0, cached)


def _settings(config: dict[str, Any]) -> Settings:
    count = _int(_field(config, "candidateCount", "candidate_count"))
    limit = _int(_field(config, "maxOutputTokens", "max_output_tokens"))
    stops = _field(config, "stopSequences", "stop_sequences")
    stops = [stops] if isinstance(stops, str) else stops if isinstance(stops, list) else []
    sequences = tuple(s for s in stops if isinstance(s, str) and s)
    if count is None and limit is None and not sequences:
        return DEFAULT_SETTINGS
    # Lenient mode reads unchecked values: at most 8 candidates (the real maximum), a cap above 0.
    candidates = min(8, max(1, count or 1))
    return Settings(candidates, limit if limit is None or limit > 0 else None, sequences)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


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


def context_tokens(body: dict[str, Any]) -> int:
    """Tokens of a cachedContent body: its system instruction, contents and media parts (BadRequest for
    bad media, as in a request)."""
    contents = body.get("contents")
    contents = [contents] if isinstance(contents, dict) else contents if isinstance(contents, list) else []
    user = "".join(_texts(c) for c in contents)
    system = _texts(_field(body, "systemInstruction", "system_instruction"))
    return count_tokens(system + user) + MEDIA_TOKENS * len(_media_parts(contents))
