"""One row's request in the SDK's types (the shared config, the contents) and in proto-JSON (batch lines)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.genai import types

from gembulk.client import sdk_patches
from gembulk.records import MediaPart, SharedPart

if TYPE_CHECKING:
    from gembulk.settings import GenerationSettings


def generate_config(settings: GenerationSettings) -> types.GenerateContentConfig:
    """The GenerateContentConfig of a job, built once and shared by every row. A request that names a
    cachedContents entry carries no system instruction: the cache holds it (the API refuses both)."""
    cached = settings.cached_content
    return sdk_patches.config_type()(
        system_instruction=None if cached else settings.system,
        cached_content=cached,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
        response_mime_type="application/json" if settings.json_schema is not None else None,
        response_json_schema=settings.json_schema,
        # A continuation hop would be a second, unscheduled request the rate limiter never saw.
        automatic_continuation=False,
    )


def contents(
    prompt: str, media: Sequence[MediaPart], shared: Sequence[SharedPart] = ()
) -> str | list[types.Content]:
    """The SDK contents: the bare prompt string (the common, cheapest case), or parts: the shared context
    first (so every request starts with the same prefix, which implicit caching can hit), then the row's
    media, then its text.

    Media come before the text, as Google's prompting guide advises for a prompt about an image.
    """
    if not media and not shared:
        return prompt
    parts = [_shared_part(part) for part in shared]
    parts.extend(_media_part(m) for m in media)
    parts.append(types.Part(text=prompt))
    return [types.Content(role="user", parts=parts)]


def shared_contents(shared: Sequence[SharedPart]) -> list[types.Content]:
    """The shared context alone, as one user turn: the content of a cachedContents entry."""
    return [types.Content(role="user", parts=[_shared_part(part) for part in shared])]


def _shared_part(part: SharedPart) -> types.Part:
    if part.text is not None:
        return types.Part(text=part.text)
    assert part.media is not None
    return _media_part(part.media)


def _media_part(media: MediaPart) -> types.Part:
    if media.file_uri is not None:
        return types.Part(file_data=types.FileData(file_uri=media.file_uri, mime_type=media.mime_type))
    return types.Part(inline_data=types.Blob(data=media.data, mime_type=media.mime_type))


def request_json(
    settings: GenerationSettings, prompt: str, media: Sequence[MediaPart] = ()
) -> dict[str, Any]:
    """The same request as a GenerateContentRequest in proto-JSON (Batch API input lines, cache keys)."""
    parts = [_shared_json(part) for part in settings.shared]
    parts.extend(_media_json(part) for part in media)
    parts.append({"text": prompt})
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if settings.cached_content:  # the cache holds the system instruction
        request["cachedContent"] = settings.cached_content
    elif settings.system:
        request["systemInstruction"] = {"role": "user", "parts": [{"text": settings.system}]}
    generation: dict[str, Any] = {}
    if settings.temperature is not None:
        generation["temperature"] = settings.temperature
    if settings.max_output_tokens is not None:
        generation["maxOutputTokens"] = settings.max_output_tokens
    if settings.json_schema is not None:
        generation["responseMimeType"] = "application/json"
        generation["responseJsonSchema"] = settings.json_schema
    if generation:
        request["generationConfig"] = generation
    return request


def _shared_json(part: SharedPart) -> dict[str, Any]:
    if part.text is not None:
        return {"text": part.text}
    assert part.media is not None
    return _media_json(part.media)


def _media_json(part: MediaPart) -> dict[str, Any]:
    if part.file_uri is not None:
        return {"fileData": {"mimeType": part.mime_type, "fileUri": part.file_uri}}
    assert part.data is not None
    return {"inlineData": {"mimeType": part.mime_type, "data": base64.b64encode(part.data).decode()}}
