"""The fake cachedContents API: create / get / list / patch / delete, expiry, and use by generateContent.

Bodies and messages as the real API sends them: a cache below the model's minimum is refused with "Cached
content is too small. total_token_count=477, min_total_token_count=1024" (quoted live by several client
projects, 2025-2026); a cachedContent that does not exist (or has expired) is 403 "CachedContent not found
(or permission denied)" (quoted live for generateContent; get/patch/delete are assumed to answer the same);
a request that sets system_instruction, tools or tool_config next to a cache, or names another model, is
refused with the messages below (both quoted from live answers in public client code). TTL defaults to
one hour (ai.google.dev/gemini-api/docs/caching).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from gembulk.fake import content, validate, wire
from gembulk.fake.files import new_id, paginate, rfc3339
from gembulk.fake.models import Catalog
from gembulk.fake.rules import pick
from gembulk.fake.wire import Refusal

DEFAULT_TTL = 3600.0
NOT_FOUND = "CachedContent not found (or permission denied)"
CONFLICT = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
    "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
)
_PROTOBUF = "type.googleapis.com/google.protobuf"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d{1,9})?)s\s*$")


@dataclass(slots=True)
class Cache:
    """One cached content: what it holds (as a token count) and when it expires."""

    cache_id: str
    model: str
    display_name: str | None
    tokens: int
    created: float
    updated: float
    expires: float

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": f"cachedContents/{self.cache_id}"}
        if self.display_name:
            body["displayName"] = self.display_name
        body.update(
            model=f"models/{self.model}",
            createTime=rfc3339(self.created),
            updateTime=rfc3339(self.updated),
            expireTime=rfc3339(self.expires, 9),
            usageMetadata={"totalTokenCount": self.tokens},
        )
        return body


class CacheStore:
    """All caches by id; an expired cache is gone the next time anything looks."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.caches: dict[str, Cache] = {}
        # Counters for /_fake/stats: entries created, deleted and given a new TTL, and requests (online or
        # batch lines) served from one.
        self.created_count = self.deleted_count = self.ttl_updates = self.uses = 0

    def counters(self) -> dict[str, int]:
        self._live("")
        return {
            "caches_created": self.created_count,
            "caches_deleted": self.deleted_count,
            "caches_live": len(self.caches),
            "cache_ttl_updates": self.ttl_updates,
            "cached_requests": self.uses,
        }

    def reset_counters(self) -> None:
        self.created_count = self.deleted_count = self.ttl_updates = self.uses = 0

    def _live(self, name: str) -> Cache | None:
        now = self.clock()
        for cache_id in [k for k, c in self.caches.items() if c.expires <= now]:
            del self.caches[cache_id]
        return self.caches.get(name.removeprefix("cachedContents/"))

    def resolve(self, name: str, model: str, body: dict[str, Any]) -> Cache | Refusal:
        """The cache a generateContent request names, or the real API's refusal of the combination."""
        cache = self._live(name)
        if cache is None:
            return Refusal(403, NOT_FOUND)
        if cache.model != model:
            return Refusal(
                400,
                f"Model used by GenerateContent request (models/{model}) and CachedContent "
                f"(models/{cache.model}) has to be the same.",
            )
        fields = (
            ("systemInstruction", "system_instruction"),
            ("tools", "tools"),
            ("toolConfig", "tool_config"),
        )
        if any(pick(body, camel, snake) for camel, snake in fields):
            return Refusal(400, CONFLICT)
        self.uses += 1
        return cache

    # -- HTTP handlers -----------------------------------------------------------------------------

    def create(self, body: Any, catalog: Catalog, version: str, strict: bool) -> web.Response:
        if strict and (refused := validate.check("CachedContent", body, version)):
            return refused.response()
        if not isinstance(body, dict):
            return wire.error(400, "Invalid JSON payload received. Expected an object.")
        model = str(body.get("model") or "").removeprefix("models/")
        spec = catalog.get(model)
        if spec is None or not spec.supports("createCachedContent"):
            return wire.error(
                404,
                f"models/{model} is not found for API version {version}, or is not supported for "
                "createCachedContent. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        try:
            tokens = content.context_tokens(body)
        except content.BadRequest as exc:
            return wire.error(400, str(exc))
        if strict and tokens < spec.cache_min_tokens:
            message = f"Cached content is too small. total_token_count={tokens}, min_total_token_count="
            return wire.error(400, f"{message}{spec.cache_min_tokens}")
        now = self.clock()
        expires = _expiry(body, now)
        if isinstance(expires, Refusal):
            return expires.response()
        display = pick(body, "displayName", "display_name")
        cache = Cache(new_id(12), model, display, tokens, now, now, expires)
        self.caches[cache.cache_id] = cache
        self.created_count += 1
        return wire.ok(cache.to_json())

    def get(self, cache_id: str) -> web.Response:
        cache = self._live(cache_id)
        return wire.ok(cache.to_json()) if cache else wire.error(403, NOT_FOUND)

    def list(self, request: web.Request) -> web.Response:
        self._live("")
        page, token = paginate(list(self.caches.values()), request, default_size=10, max_size=1000)
        body: dict[str, Any] = {"cachedContents": [cache.to_json() for cache in page]}
        if token:
            body["nextPageToken"] = token
        return wire.ok(body)

    def patch(self, cache_id: str, body: Any, version: str, strict: bool) -> web.Response:
        if strict and (refused := validate.check("CachedContent", body, version)):
            return refused.response()
        cache = self._live(cache_id)
        if cache is None:
            return wire.error(403, NOT_FOUND)
        now = self.clock()
        expires = _expiry(body if isinstance(body, dict) else {}, now, default=cache.expires)
        if isinstance(expires, Refusal):
            return expires.response()
        cache.expires, cache.updated = expires, now
        self.ttl_updates += 1
        return wire.ok(cache.to_json())

    def delete(self, cache_id: str) -> web.Response:
        if self._live(cache_id) is None:
            return wire.error(403, NOT_FOUND)
        del self.caches[cache_id.removeprefix("cachedContents/")]
        self.deleted_count += 1
        return wire.ok({})


def _expiry(body: dict[str, Any], now: float, default: float | None = None) -> float | Refusal:
    """When a cache created or patched with this body expires: `ttl` ("300s") or `expireTime`."""
    ttl = body.get("ttl")
    expire_time = pick(body, "expireTime", "expire_time")
    if ttl is not None:
        match = _DURATION.match(str(ttl))
        if match is None:  # the real wording for a malformed Duration was not found
            return Refusal(
                400, f"Invalid value at 'cached_content.ttl' ({_PROTOBUF}.Duration), {json.dumps(ttl)}"
            )
        return now + float(match.group(1))
    if expire_time is not None:
        try:
            return datetime.fromisoformat(str(expire_time).replace("Z", "+00:00")).timestamp()
        except ValueError:
            shown = json.dumps(expire_time)
            return Refusal(
                400, f"Invalid value at 'cached_content.expire_time' ({_PROTOBUF}.Timestamp), {shown}"
            )
    return now + DEFAULT_TTL if default is None else default
