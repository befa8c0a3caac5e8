"""The fake Gemini API server: aiohttp app, routing, auth, control endpoints and the command-line runner."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
from typing import Any, NamedTuple

from aiohttp import web

from gembulk.fake import embeddings, wire
from gembulk.fake.batch_input import Reader
from gembulk.fake.batches import BatchStore
from gembulk.fake.caches import CacheStore
from gembulk.fake.config import FakeConfig, updated_config
from gembulk.fake.files import FileStore
from gembulk.fake.generate import DENIED, REQUEST_LIMIT, TOO_LARGE, Generation
from gembulk.fake.models import Catalog, ModelSpec
from gembulk.fake.quota import Limits, QuotaTracker
from gembulk.fake.stats import Stats

_COLLECTIONS = frozenset({"models", "files", "batches", "tunedModels", "cachedContents"})
_GENERATE = frozenset({"generateContent", "streamGenerateContent", "countTokens"})
_BATCHES = {"batchGenerateContent": "generate", "asyncBatchEmbedContent": "embed"}
_EMBED = frozenset({"embedContent", "batchEmbedContents"})

__all__ = ["REQUEST_LIMIT", "FakeServer", "serve"]


class _Route(NamedTuple):
    """A request with its path taken apart: /[upload|download/]VERSION/COLLECTION/NAME[:VERB]."""

    request: web.Request
    prefix: str
    version: str
    rest: list[str]
    name: str
    verb: str
    method: str


class FakeServer:
    """One fake API instance: `await start()` returns its base URL, `await stop()` ends it."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.files = FileStore()
        self.caches = CacheStore()
        self.batches = BatchStore(self.files, self.caches)
        self.quota = QuotaTracker()
        self.stats = Stats()
        self.generation = Generation(self)
        self.apply_config(config or FakeConfig())
        self.app = web.Application(client_max_size=1 << 30)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def apply_config(self, config: FakeConfig) -> None:
        self.config = config
        self.limits = Limits(config.rpm, config.tpm, config.rpd, config.window, config.day)
        self.catalog = Catalog(config.models)
        self.files.processing = config.file_processing
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
        if not version and not self.config.lenient:
            return wire.not_found_path(path)  # the real API serves nothing without /v1/ or /v1beta/
        if (
            self.config.api_error_rate
            and collection in ("files", "batches")
            and "upload_id" not in request.query  # the SDK never retries an upload chunk
            and self.rng.random() < self.config.api_error_rate
        ):
            self.stats.api_faults += 1
            return wire.transient(self.rng.choice((500, 503)))
        route = _Route(request, prefix, version, rest, name, verb, method)
        if collection == "models":
            return await self._models(route)
        if collection == "files":
            return await self._files(route)
        if collection == "batches" and not prefix:
            return await self._batches(request, rest, name, verb, method)
        if collection == "cachedContents" and not prefix:
            return await self._caches(request, version, rest, name, method)
        return wire.not_found_path(path)

    async def _models(self, route: _Route) -> web.StreamResponse:
        request, prefix, version, rest, name, verb, method = route
        if prefix or (rest and not name):
            return wire.not_found_path(request.path)
        if method == "GET" and not verb:
            if denied := self._auth(request):
                return denied
            if not name:
                return self.catalog.list_json(request)
            self.stats.models_get += 1
            if "denied" in name:  # as generateContent answers such a model
                return wire.error(403, DENIED)
            return self.catalog.get_json(name, version)
        if method != "POST" or not verb:
            return wire.not_found_path(request.path)
        if verb not in _GENERATE and verb not in _BATCHES and verb not in _EMBED:
            return wire.not_found_path(request.path)
        if denied := self._auth(request):
            return denied
        spec = self._model(version, name, verb)
        if isinstance(spec, web.Response):
            return spec
        if verb in _GENERATE:
            return await self.generation.handle(request, version, spec, verb)
        strict = not self.config.lenient
        raw = await request.read()
        if verb in _BATCHES and strict and len(raw) > REQUEST_LIMIT:
            return wire.error(400, TOO_LARGE)  # inline batch requests share generateContent's 20 MB cap
        try:
            body = wire.parse_json(raw)
        except ValueError:
            return wire.invalid_json(raw)
        if verb == "embedContent":
            return embeddings.embed_content(body, spec, version, strict)
        if verb == "batchEmbedContents":
            return embeddings.batch_embed_contents(body, spec, version, strict)
        config = self.config
        reader = Reader(_BATCHES[verb], spec, version, strict)
        return self.batches.create(reader, body, config.batch_pending, config.batch_running, config.seed)

    async def _files(self, route: _Route) -> web.StreamResponse:
        request, prefix, version, rest, name, verb, method = route
        base = f"{request.scheme}://{request.host}"
        if prefix == "upload" and not rest and method == "POST":
            if "upload_id" not in request.query and (denied := self._auth(request)):
                return denied  # the chunk requests carry no API key, only the upload id
            return await self.files.upload(request, version, base)
        if not rest and method != "GET":
            return wire.not_found_path(request.path)
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
        return wire.not_found_path(request.path)

    async def _batches(
        self, request: web.Request, rest: list[str], name: str, verb: str, method: str
    ) -> web.StreamResponse:
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
        return wire.not_found_path(request.path)

    async def _caches(
        self, request: web.Request, version: str, rest: list[str], name: str, method: str
    ) -> web.StreamResponse:
        if denied := self._auth(request):
            return denied
        strict = not self.config.lenient
        if method in ("POST", "PATCH"):
            raw = await request.read()
            try:
                body = wire.parse_json(raw)
            except ValueError:
                return wire.invalid_json(raw)
        if not rest and method == "POST":
            return self.caches.create(body, self.catalog, version, strict)
        if not rest and method == "GET":
            return self.caches.list(request)
        if name and len(rest) == 1 and method == "GET":
            return self.caches.get(name)
        if name and len(rest) == 1 and method == "PATCH":
            return self.caches.patch(name, body, version, strict)
        if name and len(rest) == 1 and method == "DELETE":
            return self.caches.delete(name)
        return wire.not_found_path(request.path)

    @staticmethod
    def key_of(request: web.Request) -> str:
        return request.headers.get("x-goog-api-key") or request.query.get("key") or ""

    def _auth(self, request: web.Request) -> web.Response | None:
        key = self.key_of(request)
        if not key:
            return wire.error(403, wire.UNREGISTERED_MESSAGE)
        self.stats.keys.add(key)
        return wire.bad_key() if key in self.config.bad_keys else None

    def _model(self, version: str, model: str, verb: str) -> ModelSpec | web.Response:
        if "denied" in model:
            return wire.error(403, DENIED)
        method = "embedContent" if verb == "batchEmbedContents" else verb  # as the real 404 names it (3h)
        spec = self.catalog.get(model)
        if spec is not None and spec.supports(method):
            return spec
        hint = "Call ModelService.ListModels" if verb.endswith("enerateContent") else "Call ListModels"
        return wire.error(
            404,
            f"models/{model} is not found for API version {version}, or is not supported for {method}. "
            f"{hint} to see the list of available models and their supported methods.",
        )

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
        """Clear counters, quota windows and fail counters; files, caches and batches stay."""
        self.stats.clear()
        self.quota.reset()
        self.generation.attempts.clear()
        self.files.uploaded_count = self.files.uploaded_bytes = 0
        self.batches.created_count = 0
        self.caches.reset_counters()
        self.rng = random.Random(self.config.seed)

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(
            batches_created=self.batches.created_count,
            files_uploaded=self.files.uploaded_count,
            uploaded_bytes=self.files.uploaded_bytes,
            **self.caches.counters(),
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
