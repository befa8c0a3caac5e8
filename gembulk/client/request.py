"""One row's request in the SDK's types (the shared config, the contents) and in proto-JSON (batch lines)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.genai import types

from gembulk.client import sdk_patches
from gembulk.records import MediaPart

if TYPE_CHECKING:
    from gembulk.settings import GenerationSettings


def generate_config(settings: GenerationSettings) -> types.GenerateContentConfig:
    """The GenerateContentConfig of a job, built once and shared by every row."""
    return sdk_patches.config_type()(
        system_instruction=settings.system,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
        response_mime_type="application/json" if settings.json_schema is not None else None,
        response_json_schema=settings.json_schema,
        # A continuation hop would be a second, unscheduled request the rate limiter never saw.
        automatic_continuation=False,
    )


def contents(prompt: str, media: Sequence[MediaPart]) -> str | list[types.Content]:
    """The SDK contents: the bare prompt string (the common, cheapest case), or media parts then text.

    Media come before the text, as Google's prompting guide advises for a prompt about an image.
    """
    if not media:
        return prompt
    parts = [
        types.Part(file_data=types.FileData(file_uri=m.file_uri, mime_type=m.mime_type))
        if m.file_uri is not None
        else types.Part(inline_data=types.Blob(data=m.data, mime_type=m.mime_type))
        for m in media
    ]
    parts.append(types.Part(text=prompt))
    return [types.Content(role="user", parts=parts)]


def request_json(
    settings: GenerationSettings, prompt: str, media: Sequence[MediaPart] = ()
) -> dict[str, Any]:
    """The same request as a GenerateContentRequest in proto-JSON (Batch API input lines, cache keys)."""
    parts = [_media_json(part) for part in media]
    parts.append({"text": prompt})
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if settings.system:
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


def _media_json(part: MediaPart) -> dict[str, Any]:
    if part.file_uri is not None:
        return {"fileData": {"mimeType": part.mime_type, "fileUri": part.file_uri}}
    assert part.data is not None
    return {"inlineData": {"mimeType": part.mime_type, "data": base64.b64encode(part.data).decode()}}
