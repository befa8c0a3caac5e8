"""The fake's model catalog: what each model accepts and its limits, and the models.get / models.list bodies.

Limits and defaults are the ones models.get printed for these models (a live probe of
`GET /v1/models/gemini-3.5-flash-lite`, 2026-08-27, shows the field set and order; 2.5 and 2.0 values
from Google's model pages, 2025-2026). Caching minimums are from ai.google.dev/gemini-api/docs/caching
("Min token limit": 2.5 Flash 1,024, 2.5 Pro 4,096, 3 Flash Preview 1,024, 3 Pro Preview 4,096; page
last updated 2026-05-07); models that table does not list get the value of their family (an
assumption). Embedding dimensions: gemini-embedding-001 3,072 (Matryoshka, 128-3,072),
text-embedding-004 768, per ai.google.dev/gemini-api/docs/models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gembulk.fake import wire
from gembulk.fake.files import paginate

_TEXT_METHODS = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")
_EMBED_METHODS = ("embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent")
_ONE_MILLION = 1_048_576


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: its models.get fields and the rules the fake applies to requests for it."""

    name: str
    display_name: str
    version: str
    input_limit: int = _ONE_MILLION
    output_limit: int = 65_536
    methods: tuple[str, ...] = _TEXT_METHODS
    thinking: bool = True
    top_k: int | None = 64
    description: str = ""
    penalties: bool = True  # presencePenalty / frequencyPenalty accepted
    thinking_required: bool = False  # thinkingBudget 0 refused
    thinking_levels: tuple[str, ...] = ()  # accepted thinkingLevel values; () = not checked
    cache_min_tokens: int = 1024
    embed_dims: int = 0  # embedding models: the default (and largest) vector size

    def supports(self, method: str) -> bool:
        if method == "streamGenerateContent":
            method = "generateContent"
        return method in self.methods

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"models/{self.name}",
            "version": self.version,
            "displayName": self.display_name,
            "description": self.description or self.display_name,
            "inputTokenLimit": self.input_limit,
            "outputTokenLimit": self.output_limit,
            "supportedGenerationMethods": list(self.methods),
        }
        if not self.embed_dims:
            body.update(temperature=1, topP=0.95)
            if self.top_k is not None:
                body["topK"] = self.top_k
            body["maxTemperature"] = 2
        if self.thinking:
            body["thinking"] = True
        return body


def _flash25(name: str, display: str, **extra: Any) -> ModelSpec:
    # "Penalty is not enabled for models/gemini-2.5-flash" (gemini-real-responses.md, 3f).
    return ModelSpec(name, display, "001", penalties=False, **extra)


_LEVELS_FLASH3 = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
# "Thinking level MINIMAL is not supported for this model." was answered by a 3.x Pro model (3f).
_LEVELS_PRO3 = ("LOW", "HIGH")

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _flash25("gemini-2.5-flash", "Gemini 2.5 Flash"),
        _flash25("gemini-2.5-pro", "Gemini 2.5 Pro", thinking_required=True, cache_min_tokens=4096),
        _flash25("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite"),
        _flash25("gemini-2.5-flash-preview-09-2025", "Gemini 2.5 Flash Preview Sep 2025"),
        _flash25("gemini-2.5-flash-lite-preview-09-2025", "Gemini 2.5 Flash-Lite Preview Sep 2025"),
        ModelSpec("gemini-2.0-flash", "Gemini 2.0 Flash", "2.0", output_limit=8192, thinking=False, top_k=40),
        ModelSpec("gemini-2.0-flash-001", "Gemini 2.0 Flash 001", "2.0", output_limit=8192, thinking=False),
        ModelSpec("gemini-2.0-flash-lite", "Gemini 2.0 Flash-Lite", "2.0", output_limit=8192, thinking=False),
        ModelSpec(
            "gemini-2.0-flash-lite-001", "Gemini 2.0 Flash-Lite 001", "2.0", output_limit=8192, thinking=False
        ),
        ModelSpec("gemini-3-flash", "Gemini 3 Flash", "3.0", thinking_levels=_LEVELS_FLASH3),
        ModelSpec(
            "gemini-3-flash-preview",
            "Gemini 3 Flash Preview",
            "3-flash-preview",
            thinking_levels=_LEVELS_FLASH3,
        ),
        ModelSpec(
            "gemini-3-pro-preview",
            "Gemini 3 Pro Preview",
            "3-pro-preview",
            thinking_required=True,
            thinking_levels=_LEVELS_PRO3,
            cache_min_tokens=4096,
        ),
        ModelSpec("gemini-flash-latest", "Gemini Flash Latest", "latest", thinking_levels=_LEVELS_FLASH3),
        ModelSpec("gemini-flash-lite-latest", "Gemini Flash-Lite Latest", "latest"),
        ModelSpec(
            "gemini-pro-latest", "Gemini Pro Latest", "latest", thinking_required=True, cache_min_tokens=4096
        ),
        ModelSpec(
            "gemini-embedding-001",
            "Gemini Embedding 001",
            "001",
            input_limit=2048,
            output_limit=1,
            methods=_EMBED_METHODS,
            thinking=False,
            description="Obtain a distributed representation of a text.",
            embed_dims=3072,
        ),
        ModelSpec(
            "text-embedding-004",
            "Text Embedding 004",
            "004",
            input_limit=2048,
            output_limit=1,
            methods=("embedContent",),
            thinking=False,
            description="Obtain a distributed representation of a text.",
            embed_dims=768,
        ),
    )
}
# Models answered with generateContent (the names the fake has always accepted).
BUILTIN_MODELS = tuple(name for name, spec in CATALOG.items() if spec.supports("generateContent"))


def extra_model(name: str) -> ModelSpec:
    """A --model name: a text model with 2.5 Flash's limits, or an embedding model if its name says so."""
    if "embedding" in name:
        return dataclasses.replace(CATALOG["gemini-embedding-001"], name=name, display_name=name)
    return ModelSpec(name, name, "001")


class Catalog:
    """The built-in models plus the configured extras; models.get and models.list."""

    def __init__(self, extras: tuple[str, ...] = ()) -> None:
        self.specs = dict(CATALOG)
        for name in extras:
            self.specs.setdefault(name, extra_model(name))

    def get(self, name: str) -> ModelSpec | None:
        return self.specs.get(name.removeprefix("models/"))

    def get_json(self, name: str, version: str) -> web.Response:
        spec = self.get(name)
        if spec is None:
            # As a live probe printed it (GET /v1beta/models/gemini-2.5-flash-001, 2026-08-27).
            return wire.error(404, f"Model is not found: models/{name} for api version {version}")
        return wire.ok(spec.to_json())

    def list_json(self, request: web.Request) -> web.Response:
        # Documented: 50 models a page by default, at most 1000 (ai.google.dev/api/models, models.list).
        page, token = paginate(list(self.specs.values()), request, default_size=50, max_size=1000)
        body: dict[str, Any] = {"models": [spec.to_json() for spec in page]}
        if token:
            body["nextPageToken"] = token
        return wire.ok(body)
