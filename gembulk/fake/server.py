"""The fake Gemini API server: aiohttp app, routing, auth, quotas, faults, latency and counters."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
from typing import Any

from aiohttp import web

from gembulk.fake import content, wire
from gembulk.fake.batches import BatchStore
from gembulk.fake.config import BUILTIN_MODELS, FakeConfig, updated_config
from gembulk.fake.files import FileStore
from gembulk.fake.quota import Limits, QuotaTracker, Violation, quota_error
from gembulk.fake.stats import Stats

_COLLECTIONS = frozenset({"models", "files", "batches", "tunedModels"})
_VERBS = frozenset({"generateContent", "streamGenerateContent", "countTokens"})
_DENIED = "The caller does not have permission"
# Status of the placeholder response returned after closing a connection on purpose; never sent.
_DROPPED = 499
# The real API refuses a request body over 20 MB (inline media count in, base64-encoded).
REQUEST_LIMIT = 20 * 1024 * 1024


class FakeServer:
    """One fake API instance: `await start()` returns its base URL, `await stop()` ends it."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.files = FileStore()
        self.batches = BatchStore(self.files)
        self.quota = QuotaTracker()
        self.stats = Stats()
        self.attempts: dict[tuple[str, bytes], int] = {}  # marker fail/drop counters per distinct request
        self.apply_config(config or FakeConfig())
        self.app = web.Application(client_max_size=1 << 30)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def apply_config(self, config: FakeConfig) -> None:
        self.config = config
        self.limits = Limits(config.rpm, config.tpm, config.rpd, config.window, config.day)
        self.models = frozenset(BUILTIN_MODELS) | frozenset(config.models)
        self.rng = random.Random(config.seed)

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port, backlog=1024)
        await site.start()
        port = self.runner.addresses[0][1]
        host = self.config.host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- routing -----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except web.HTTPException as exc:  # e.g. a body over client_max_size
            return wire.error(exc.status, exc.reason)
        except Exception as exc:  # never a traceback page; the server keeps serving
            return wire.error(500, f"{wire.TRANSIENT_MESSAGES[500]} ({type(exc).__name__})")

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.startswith("/_fake/"):
            return await self._control(request, path[7:], method)
        segs = path[1:].split("/")
        prefix = segs.pop(0) if segs[0] in ("upload", "download") else ""
        version = segs.pop(0) if segs and segs[0] not in _COLLECTIONS else ""
        collection, rest = (segs[0], segs[1:]) if segs else ("", [])
        name, _, verb = rest[0].partition(":") if len(rest) == 1 else ("", "", "")
        base = f"{request.scheme}://{request.host}"
        if (
            self.config.api_error_rate
            and collection in ("files", "batches")
            and "upload_id" not in request.query  # the SDK never retries an upload chunk
            and self.rng.random() < self.config.api_error_rate
        ):
            self.stats.api_faults += 1
            return wire.transient(self.rng.choice((500, 503)))
        if collection == "models" and name and method == "POST" and not prefix:
            if verb in _VERBS:
                return await self._generate(request, version, name, verb)
            if verb == "batchGenerateContent":
                return await self._batch_create(request, version, name)
        elif collection == "files" and prefix == "upload" and not rest and method == "POST":
            if "upload_id" not in request.query and (denied := self._auth(request)):
                return denied  # the chunk requests carry no API key, only the upload id
            return await self.files.upload(request, version, base)
        elif collection == "files" and (rest or method == "GET"):
            if denied := self._auth(request):
                return denied
            if not rest and method == "GET" and not prefix:
                return self.files.list_json(request, version, base)
            if verb == "download" and method == "GET":
                return self.files.download(name)
            if not verb and not prefix and method == "GET":
                return self.files.get_json(name, version, base)
            if not verb and not prefix and method == "DELETE":
                return self.files.delete(name)
        elif collection == "batches" and not prefix:
            if denied := self._auth(request):
                return denied
            if not rest and method == "GET":
                return self.batches.list(request)
            if name and not verb and method == "GET":
                return self.batches.get(name)
            if name and verb == "cancel" and method == "POST":
                return self.batches.cancel(name)
            if name and not verb and method == "DELETE":
                return self.batches.delete(name)
        return wire.not_found_path(path)

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return wire.error(403, wire.UNREGISTERED_MESSAGE)
        self.stats.keys.add(key)
        return wire.bad_key() if key in self.config.bad_keys else None

    def _check_model(self, version: str, model: str, verb: str) -> web.Response | None:
        if "denied" in model:
            return wire.error(403, _DENIED)
        if model in self.models:
            return None
        hint = "Call ModelService.ListModels" if verb.endswith("enerateContent") else "Call ListModels"
        return wire.error(
            404,
            f"models/{model} is not found for API version {version}, or is not supported for {verb}. "
            f"{hint} to see the list of available models and their supported methods.",
        )

    # -- generateContent / streamGenerateContent / countTokens -------------------------------------

    async def _generate(
        self, request: web.Request, version: str, model: str, verb: str
    ) -> web.StreamResponse:
        stats = self.stats
        stats.in_flight += 1
        stats.peak = max(stats.peak, stats.in_flight)
        if verb == "countTokens":
            stats.count_tokens += 1
        else:
            stats.generate += 1
        try:
            response = await self._generate_inner(request, version, model, verb)
        finally:
            stats.in_flight -= 1
        if response.status == _DROPPED:
            stats.dropped += 1
        else:
            stats.by_status[response.status] = stats.by_status.get(response.status, 0) + 1
        return response

    async def _generate_inner(
        self, request: web.Request, version: str, model: str, verb: str
    ) -> web.StreamResponse:
        config = self.config
        if (denied := self._auth(request)) or (denied := self._check_model(version, model, verb)):
            return denied
        raw = await request.read()
        if len(raw) > REQUEST_LIMIT:
            return wire.error(400, f"Request payload size exceeds the limit: {REQUEST_LIMIT} bytes.")
        try:
            body = wire.parse_json(raw)
            if verb == "countTokens" and isinstance(body, dict):
                body = body.get("generateContentRequest") or body.get("generate_content_request") or body
            parsed = content.with_files(content.parse_request(body), self.files.lookup)
        except content.BadRequest as exc:
            return wire.error(400, str(exc))
        except ValueError:
            return wire.invalid_json(raw)
        if isinstance(parsed, str):
            return wire.error(403, parsed)
        prompt = parsed
        if prompt.media and verb != "countTokens":
            self.stats.count_media(prompt.media)
        if verb == "countTokens":
            await self._sleep(0.0)
            details = [{"modality": "TEXT", "tokenCount": prompt.tokens}]  # media counted in, as TEXT
            return wire.ok({"totalTokens": prompt.tokens, "promptTokensDetails": details})
        self.stats.count_prompt(prompt.user)
        marks = prompt.markers
        if marks.invalid:
            return wire.error(400, content.INVALID_ARGUMENT_MESSAGE)
        if marks.denied:
            return wire.error(403, _DENIED)
        if self.limits.rpm or self.limits.tpm or self.limits.rpd:
            violations = self.quota.admit(model, prompt.tokens, self.limits)
            if violations:
                self.stats.rate_limited += 1
                return wire.pretty(429, quota_error(violations, model))
        await self._sleep(marks.sleep)
        if marks.fail_times or marks.drop_times:
            key = (model, raw)
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            if attempt <= marks.drop_times:
                return self._drop(request)
            if attempt <= marks.drop_times + marks.fail_times:
                return self._fail(marks.fail_code, model)
        if config.error_rate and self.rng.random() < config.error_rate:
            fault = self.rng.randrange(3)
            return self._drop(request) if fault == 2 else wire.transient((500, 503)[fault])
        rid = content.response_id()
        if verb == "streamGenerateContent":
            return await self._stream(request, content.stream_chunks(prompt, model, rid))
        return wire.ok(content.build_response(prompt, model, rid))

    async def _sleep(self, extra: float) -> None:
        config = self.config
        delay = config.latency + extra
        if config.jitter:
            delay += self.rng.uniform(0, config.jitter)
        if delay > 0:
            await asyncio.sleep(delay)

    def _fail(self, code: int, model: str) -> web.Response:
        if code == 429:
            self.stats.rate_limited += 1
            violation = Violation("rpm", self.config.rpm or 10, 1.0, 60.0)
            return wire.pretty(429, quota_error([violation], model, delay="1s"))
        return wire.transient(code)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        # Close the TCP connection without answering; clients see a server disconnect.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=_DROPPED)

    @staticmethod
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

    async def _batch_create(self, request: web.Request, version: str, model: str) -> web.Response:
        if (denied := self._auth(request)) or (
            denied := self._check_model(version, model, "batchGenerateContent")
        ):
            return denied
        raw = await request.read()
        try:
            body = wire.parse_json(raw)
        except ValueError:
            return wire.invalid_json(raw)
        config = self.config
        return self.batches.create(model, body, config.batch_pending, config.batch_running, config.seed)

    # -- test/bench control: /_fake/stats, /_fake/reset, /_fake/config -----------------------------

    async def _control(self, request: web.Request, what: str, method: str) -> web.Response:
        if what == "stats":
            return wire.ok(self.snapshot())
        if what == "reset" and method == "POST":
            self.reset()
            return wire.ok(self.snapshot())
        if what == "config":
            if method == "POST":
                try:
                    self.apply_config(updated_config(self.config, wire.parse_json(await request.read())))
                except (ValueError, TypeError) as exc:
                    return wire.error(400, f"Bad config: {exc}")
            return wire.ok(dataclasses.asdict(self.config))
        return wire.not_found_path(request.path)

    def reset(self) -> None:
        """Clear counters, quota windows and fail counters; files and batches stay."""
        self.stats.clear()
        self.quota.reset()
        self.attempts.clear()
        self.files.uploaded_count = self.files.uploaded_bytes = 0
        self.batches.created_count = 0
        self.rng = random.Random(self.config.seed)

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(
            batches_created=self.batches.created_count,
            files_uploaded=self.files.uploaded_count,
            uploaded_bytes=self.files.uploaded_bytes,
        )


def serve(config: FakeConfig) -> None:
    """Run the fake until SIGINT/SIGTERM; the first stdout line is the base URL."""
    # Callers may pipe stderr without reading it; a full pipe would block the server, so stay quiet.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))


async def _serve(config: FakeConfig) -> None:
    server = FakeServer(config)
    url = await server.start()
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
