"""The request shapes the fake accepts, derived from google-genai's pydantic types minus Vertex-only fields.

The SDK's types name every field of the Gemini API's request messages (snake_case, as protobuf names
them) with its type and nesting, so the fake reads them instead of copying them: a field the SDK adds
in a later version is accepted as soon as the SDK is upgraded. The SDK's types also describe Vertex AI,
so each field the real Gemini Developer API refuses is listed in _VERTEX_ONLY with where that is known
from; tests/test_fake_validate.py checks every listed name still exists in the installed SDK.
"""

from __future__ import annotations

import datetime
import enum
import functools
import types as pytypes
import typing
from dataclasses import dataclass, field
from typing import Any

import pydantic
from google.genai import types as sdk

# Fields of the SDK's types that are not on the Gemini Developer API's wire. Sources: the SDK's own
# Gemini-API request converters raise "... parameter is only supported in Gemini Enterprise Agent
# Platform mode" for these (google/genai/models.py, `_*_to_mldev`, google-genai 3.6.1);
# Blob/FileData.display_name were refused the same way by google-genai 1.x ("not supported in Gemini
# API"); Schema.additional_properties / defs / ref are refused live with 'Unknown name
# "additionalProperties" at 'generation_config.response_schema'' and 'Unknown name "$defs"' (error
# bodies quoted in public client code); ImageConfig.person_generation is refused live with 'Unknown
# name "personGeneration" at 'generation_config.image_config'' (a live-probe write-up, 2026-09).
_VERTEX_ONLY: dict[str, frozenset[str]] = {
    "AuthConfig": frozenset(
        {
            "api_key_config",
            "auth_type",
            "google_service_account_config",
            "http_basic_auth_config",
            "oauth_config",
            "oidc_config",
        }
    ),
    "Blob": frozenset({"display_name"}),
    "FileData": frozenset({"display_name"}),
    "FunctionCall": frozenset({"partial_args", "will_continue"}),
    "FunctionCallingConfig": frozenset({"stream_function_call_arguments"}),
    "GoogleMaps": frozenset({"grounding_types"}),
    "GoogleSearch": frozenset({"blocking_confidence", "exclude_domains"}),
    "ImageConfig": frozenset(
        {
            "person_generation",
            "prominent_people",
            "output_mime_type",
            "output_compression_quality",
            "image_output_options",
        }
    ),
    "SafetySetting": frozenset({"method"}),
    "Schema": frozenset({"additional_properties", "defs", "ref"}),
    "Tool": frozenset({"retrieval", "enterprise_web_search", "parallel_ai_search", "exa_ai_search"}),
}

# generationConfig as the SDK's Gemini-API converter fills it from GenerateContentConfig
# (`_GenerateContentConfig_to_mldev`): the SDK's GenerationConfig type lacks image_config and holds
# Vertex-only fields, so the wire message is listed here, typed from the SDK's annotations.
_GENERATION_FIELDS = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "candidate_count": int,
    "max_output_tokens": int,
    "stop_sequences": list[str],
    "response_logprobs": bool,
    "logprobs": int,
    "presence_penalty": float,
    "frequency_penalty": float,
    "seed": int,
    "response_mime_type": str,
    "response_schema": sdk.Schema,
    "response_json_schema": Any,
    "response_modalities": list[sdk.Modality],
    "media_resolution": sdk.MediaResolution,
    "speech_config": sdk.SpeechConfig,
    "thinking_config": sdk.ThinkingConfig,
    "image_config": sdk.ImageConfig,
    "enable_enhanced_civic_answers": bool,
    "audio_transcription_config": sdk.AudioTranscriptionConfig,
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a request message: its protobuf name, kind and (for messages and enums) type."""

    name: str  # the protobuf (snake_case) name, as error paths print it
    kind: str  # message | map | enum | string | int | float | bool | bytes | any
    repeated: bool = False
    message: str = ""  # for message and map kinds: the message's name in MESSAGES
    enum: frozenset[str] = frozenset()  # upper-cased member names, for enums
    type_name: str = ""  # the protobuf type printed in "Invalid value" errors


@dataclass(slots=True)
class Message:
    """A request message: its fields by both JSON spellings (camelCase and snake_case)."""

    name: str
    fields: dict[str, Field] = field(default_factory=dict)


MESSAGES: dict[str, Message] = {}

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "int",
    float: "float",
    bool: "bool",
    bytes: "bytes",
    datetime.datetime: "string",
}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, pytypes.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _field(name: str, annotation: Any) -> Field:
    """The Field for an SDK annotation; unions prefer a list, then a message, then an enum."""
    members = _members(annotation)
    for member in members:
        if typing.get_origin(member) is list:
            (inner,) = typing.get_args(member) or (Any,)
            single = _field(name, inner)
            return Field(name, single.kind, True, single.message, single.enum, single.type_name)
    for member in members:
        if isinstance(member, type) and issubclass(member, pydantic.BaseModel):
            return Field(name, "message", message=_register(member), type_name=member.__name__)
    for member in members:
        if isinstance(member, type) and issubclass(member, enum.Enum):
            names = frozenset(m.name.upper() for m in member)
            return Field(name, "enum", enum=names, type_name=member.__name__)
    member = members[0]
    if typing.get_origin(member) is dict:
        args = typing.get_args(member)
        value = args[1] if len(args) == 2 else Any
        if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
            return Field(name, "map", message=_register(value), type_name=value.__name__)
        return Field(name, "any")
    return Field(name, _SCALARS.get(member, "any"))


def _add(message: Message, name: str, annotation: Any) -> None:
    spec = _field(name, annotation)
    message.fields[name] = spec
    message.fields[camel(name)] = spec


def _register(model: type[pydantic.BaseModel]) -> str:
    name = model.__name__
    if name in MESSAGES:
        return name
    message = MESSAGES[name] = Message(name)  # registered first: messages nest recursively
    excluded = _VERTEX_ONLY.get(name, frozenset())
    for field_name, info in model.model_fields.items():
        if field_name not in excluded:
            _add(message, field_name, info.annotation)
    return name


def _define(name: str, fields: dict[str, Any]) -> Message:
    message = MESSAGES[name] = Message(name)
    for field_name, annotation in fields.items():
        _add(message, field_name, annotation)
    return message


@functools.cache
def build() -> None:
    """Register the request messages the fake validates (once; the SDK types do not change at runtime)."""
    _define("GenerationConfig", _GENERATION_FIELDS)
    request = {
        "model": str,
        "contents": list[sdk.Content],
        "system_instruction": sdk.Content,
        "tools": list[sdk.Tool],
        "tool_config": sdk.ToolConfig,
        "safety_settings": list[sdk.SafetySetting],
        "cached_content": str,
        "labels": dict[str, str],
        "service_tier": str,
        "continuation_token": str,
        "store": bool,
    }
    generate = _define("GenerateContentRequest", request)
    _add_message(generate, "generation_config", "GenerationConfig")
    count = _define("CountTokensRequest", {"contents": list[sdk.Content]})
    _add_message(count, "generate_content_request", "GenerateContentRequest")
    embed = {"model": str, "content": sdk.Content, "task_type": str, "title": str}
    embed["output_dimensionality"] = int
    _define("EmbedContentRequest", embed)
    batch_embed = _define("BatchEmbedContentsRequest", {})
    _add_message(batch_embed, "requests", "EmbedContentRequest", repeated=True)
    cache = {
        "model": str,
        "display_name": str,
        "contents": list[sdk.Content],
        "system_instruction": sdk.Content,
        "tools": list[sdk.Tool],
        "tool_config": sdk.ToolConfig,
        "ttl": str,
        "expire_time": str,
        "name": str,
    }
    _define("CachedContent", cache)


def _add_message(message: Message, name: str, target: str, repeated: bool = False) -> None:
    spec = Field(name, "message", repeated, target, type_name=target)
    message.fields[name] = spec
    message.fields[camel(name)] = spec
