"""generateContent, streamGenerateContent and countTokens: read, validate, apply quotas and faults, answer."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any, Protocol

from aiohttp import web

from gembulk.fake import answer, content, rules, validate, wire
from gembulk.fake.caches import CacheStore
from gembulk.fake.config import FakeConfig
from gembulk.fake.files import FileStore
from gembulk.fake.models import ModelSpec
from gembulk.fake.quota import Limits, QuotaTracker, Violation, quota_error
from gembulk.fake.stats import Stats
from gembulk.fake.wire import Refusal


class Host(Protocol):
    """What the handler needs of the server it answers for (the FakeServer, which owns it)."""

    config: FakeConfig
    limits: Limits
    quota: QuotaTracker
    stats: Stats
    files: FileStore
    caches: CacheStore
    rng: random.Random

    def key_of(self, request: web.Request) -> str: ...


DENIED = "The caller does not have permission"
# Status of the placeholder response returned after closing a connection on purpose; never sent.
DROPPED = 499
# The real API refuses a request body over 20 MB (inline media count in, base64-encoded).
REQUEST_LIMIT = 20 * 1024 * 1024
TOO_LARGE = f"Request payload size exceeds the limit: {REQUEST_LIMIT} bytes."
# "The File cxgja95z0ak1 is not in an ACTIVE state and usage is not allowed." (400 FAILED_PRECONDITION,
# quoted from live answers in many public projects).
NOT_ACTIVE = "The File {file_id} is not in an ACTIVE state and usage is not allowed."


def resolve(
    prompt: content.Prompt,
    request: dict[str, Any],
    spec: ModelSpec,
    files: FileStore,
    caches: CacheStore,
    strict: bool,
    *,
    input_limit: bool = True,
) -> content.Prompt | Refusal:
    """The prompt with its files and cachedContent resolved, or the real API's refusal.

    Lenient mode keeps the old behaviour: a cachedContent that does not exist is ignored, and no input
    limit or cache rule is applied. countTokens counts any size (a live probe counted 1,500,002 tokens with
    200), so it passes input_limit=False.
    """
    resolved = content.with_files(prompt, files.lookup)
    if isinstance(resolved, str):
        return Refusal(403, resolved)
    for media in resolved.media:
        if media.kind == "file" and not files.active(media.file_id or ""):
            return Refusal(400, NOT_ACTIVE.format(file_id=media.file_id), "FAILED_PRECONDITION")
    if resolved.cached_content:
        cache = caches.resolve(resolved.cached_content, spec.name, request)
        if isinstance(cache, Refusal):
            if strict:
                return cache
        else:
            tokens = resolved.tokens + cache.tokens
            resolved = dataclasses.replace(resolved, tokens=tokens, cached_tokens=cache.tokens)
    if strict and input_limit and resolved.tokens > spec.input_limit:
        return Refusal(
            400,  # gemini-real-responses.md, 3d
            f"The input token count ({resolved.tokens}) exceeds the maximum number of tokens allowed "
            f"({spec.input_limit}).",
        )
    return resolved


class Generation:
    """The generateContent / streamGenerateContent / countTokens handler of one FakeServer (its Host)."""

    def __init__(self, server: Host) -> None:
        self.server = server
        self.attempts: dict[tuple[str, bytes], int] = {}  # marker fail/drop counters per distinct request

    async def handle(
        self, request: web.Request, version: str, spec: ModelSpec, verb: str
    ) -> web.StreamResponse:
        stats = self.server.stats
        epoch = stats.epoch
        stats.in_flight += 1
        stats.peak = max(stats.peak, stats.in_flight)
        if verb == "countTokens":
            stats.count_tokens += 1
        else:
            stats.generate += 1
        try:
            response = await self._inner(request, version, spec, verb)
        finally:
            stats.in_flight -= 1
        if stats.epoch != epoch:
            pass  # begun before a reset (a killed client's request, answered late): not this period's
        elif response.status == DROPPED:
            stats.dropped += 1
        else:
            stats.by_status[response.status] = stats.by_status.get(response.status, 0) + 1
        return response

    def _read(
        self, raw: bytes, version: str, spec: ModelSpec, verb: str
    ) -> tuple[Any, content.Prompt] | Refusal:
        """The request body and its prompt, or the 400 the real API gives for it."""
        strict = not self.server.config.lenient
        try:
            body = wire.parse_json(raw)
        except ValueError:
            return Refusal(400, wire.invalid_json_message(raw))
        message = "CountTokensRequest" if verb == "countTokens" else "GenerateContentRequest"
        if strict and (refused := validate.check(message, body, version)):
            return refused
        if verb == "countTokens" and isinstance(body, dict):
            body = rules.pick(body, "generateContentRequest", "generate_content_request") or body
        if strict and isinstance(body, dict) and (refused := rules.check_generate(body, spec)):
            return refused
        try:
            return body, content.parse_request(body)
        except content.BadRequest as exc:
            return Refusal(400, str(exc))

    async def _inner(
        self, request: web.Request, version: str, spec: ModelSpec, verb: str
    ) -> web.StreamResponse:
        server = self.server
        raw = await request.read()
        if len(raw) > REQUEST_LIMIT:
            return wire.error(400, TOO_LARGE)
        read = self._read(raw, version, spec, verb)
        if isinstance(read, Refusal):
            return read.response()
        body, prompt = read
        strict = not server.config.lenient
        counting = verb == "countTokens"
        resolved = resolve(prompt, body, spec, server.files, server.caches, strict, input_limit=not counting)
        if isinstance(resolved, Refusal):
            return resolved.response()
        prompt = resolved
        if counting:
            return await self._count(prompt)
        if prompt.media:
            server.stats.count_media(prompt.media)
        server.stats.count_prompt(prompt.user)
        marks = prompt.markers
        if marks.invalid:
            return wire.error(400, content.INVALID_ARGUMENT_MESSAGE)
        if marks.denied:
            return wire.error(403, DENIED)
        limits = server.limits
        if limits.rpm or limits.tpm or limits.rpd:
            key = server.key_of(request)
            violations = server.quota.admit(spec.name, prompt.tokens, limits, project=key)
            if violations:
                server.stats.rate_limited += 1
                return wire.pretty(429, quota_error(violations, spec.name))
        await self._sleep(marks.sleep)
        if faulted := self._fault(request, spec.name, raw, marks):
            return faulted
        rid = content.response_id()
        if verb == "streamGenerateContent":
            return await _stream(request, answer.stream_chunks(prompt, spec.name, rid))
        return wire.ok(answer.build_response(prompt, spec.name, rid))

    async def _count(self, prompt: content.Prompt) -> web.Response:
        await self._sleep(0.0)
        details = [{"modality": "TEXT", "tokenCount": prompt.tokens}]  # media counted in, as TEXT
        body: dict[str, Any] = {"totalTokens": prompt.tokens}
        if prompt.cached_tokens:
            body["cachedContentTokenCount"] = prompt.cached_tokens
        body["promptTokensDetails"] = details
        return wire.ok(body)

    def _fault(
        self, request: web.Request, model: str, raw: bytes, marks: content.Markers
    ) -> web.StreamResponse | None:
        server = self.server
        if marks.fail_times or marks.drop_times:
            key = (model, raw)
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            if attempt <= marks.drop_times:
                return _drop(request)
            if attempt <= marks.drop_times + marks.fail_times:
                return self._fail(marks.fail_code, model)
        if server.config.error_rate and server.rng.random() < server.config.error_rate:
            fault = server.rng.randrange(3)
            return _drop(request) if fault == 2 else wire.transient((500, 503)[fault])
        return None

    async def _sleep(self, extra: float) -> None:
        config = self.server.config
        delay = config.latency + extra
        if config.jitter:
            delay += self.server.rng.uniform(0, config.jitter)
        if delay > 0:
            await asyncio.sleep(delay)

    def _fail(self, code: int, model: str) -> web.Response:
        if code == 429:
            self.server.stats.rate_limited += 1
            violation = Violation("rpm", self.server.config.rpm or 10, 1.0, 60.0)
            return wire.pretty(429, quota_error([violation], model, delay="1s"))
        return wire.transient(code)


def _drop(request: web.Request) -> web.StreamResponse:
    # Close the TCP connection without answering; clients see a server disconnect.
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=DROPPED)


async def _stream(request: web.Request, chunks: list[dict[str, Any]]) -> web.StreamResponse:
    if request.query.get("alt") != "sse":  # without alt=sse the real API sends one JSON array
        return web.Response(
            body=b"[" + b",\r\n".join(wire.compact(c) for c in chunks) + b"]",
            content_type="application/json",
        )
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Content-Disposition": "attachment"}
    )
    await response.prepare(request)
    for chunk in chunks:
        await response.write(b"data: " + wire.compact(chunk)[:-1] + b"\r\n\r\n")
    await response.write_eof()
    return response
