"""The fake embeddings API: embedContent, batchEmbedContents and the answers of batch embedding jobs.

Vectors are deterministic: the same text always gives the same vector (SHAKE-256 of the text, read as
numbers in [-1, 1] and scaled to unit length over the model's full size), and outputDimensionality keeps
the first N values, as the real models' Matryoshka embeddings are meant to be truncated. Bodies as the
real API sends them: {"embedding": {"values": [...]}}, {"embeddings": [...]}, and batch job lines
{"response": {"tokenCount": "1", "embedding": {...}}, "key": ...} (gemini-real-responses.md, 5e).
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

from aiohttp import web

from gembulk.fake import content, validate, wire
from gembulk.fake.models import ModelSpec
from gembulk.fake.rules import pick
from gembulk.fake.wire import Refusal

# "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n" (3e, a live fixture).
MAX_BATCH = 100
_SCALE = 2.0 / 0xFFFFFFFF


def vector(text: str, dims: int, size: int) -> list[float]:
    """The first `dims` values of the unit vector of `size` values that stands for `text`."""
    raw = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(4 * size)
    values = [n * _SCALE - 1.0 for n in struct.unpack(f"<{size}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 9) for v in values[:dims]]


def request_text(body: dict[str, Any]) -> str:
    """The text an EmbedContentRequest embeds: every text part of its content, joined."""
    parts = (body.get("content") or {}).get("parts") if isinstance(body.get("content"), dict) else None
    parts = [parts] if isinstance(parts, dict) else parts if isinstance(parts, list) else []
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def embed(
    body: Any, spec: ModelSpec, where: str = "EmbedContentRequest"
) -> tuple[list[float], int] | Refusal:
    """The vector and token count for one EmbedContentRequest, or why the real API refuses it."""
    if not isinstance(body, dict):
        return Refusal(400, "Invalid JSON payload received. Expected an object.")
    if not isinstance(body.get("content"), dict):
        return Refusal(400, f"* {where}.content: content is not specified\n")  # inferred wording
    asked = pick(body, "outputDimensionality", "output_dimensionality")
    size = spec.embed_dims
    dims = _whole(asked) if asked is not None else size
    if not 1 <= dims <= size:  # inferred wording: the real message was not found
        return Refusal(
            400, f"* {where}.output_dimensionality: output_dimensionality must be in the range [1, {size}].\n"
        )
    text = request_text(body)
    return vector(text, dims, size), content.count_tokens(text)


def _whole(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def batch_result(body: Any, spec: ModelSpec) -> tuple[str, Any]:
    """("response", EmbedContentResponse with tokenCount) or ("error", Status) for a batch job request."""
    found = embed(body, spec)
    if isinstance(found, Refusal):
        return "error", found.batch_error()
    values, tokens = found
    return "response", {"tokenCount": str(tokens), "embedding": {"values": values}}


# -- HTTP handlers ---------------------------------------------------------------------------------


def embed_content(body: Any, spec: ModelSpec, version: str, strict: bool) -> web.Response:
    if strict and (refused := validate.check("EmbedContentRequest", body, version)):
        return refused.response()
    found = embed(body, spec)
    if isinstance(found, Refusal):
        return found.response()
    return wire.ok({"embedding": {"values": found[0]}})


def batch_embed_contents(body: Any, spec: ModelSpec, version: str, strict: bool) -> web.Response:
    if strict and (refused := validate.check("BatchEmbedContentsRequest", body, version)):
        return refused.response()
    requests = body.get("requests") if isinstance(body, dict) else None
    requests = [requests] if isinstance(requests, dict) else requests if isinstance(requests, list) else []
    if not requests:
        return wire.error(
            400, "* BatchEmbedContentsRequest.requests: requests is not specified\n"
        )  # inferred
    if len(requests) > MAX_BATCH:
        return wire.error(
            400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"
        )
    embeddings = []
    for index, request in enumerate(requests):
        found = embed(request, spec, f"BatchEmbedContentsRequest.requests[{index}]")
        if isinstance(found, Refusal):
            return found.response()
        embeddings.append({"values": found[0]})
    return wire.ok({"embeddings": embeddings})
