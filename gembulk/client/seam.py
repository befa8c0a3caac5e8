"""The SDK seam: the one place gembulk calls google-genai. Builds the client, sends one request, looks a model
up, and makes the Files and Batch API calls the batch executor needs; answers and errors leave it as gembulk
values."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from google.genai import Client, types

from gembulk.client import sdk_patches
from gembulk.client.failures import scrub, translate
from gembulk.client.outcomes import enum_name, outcome_from_response
from gembulk.client.request import contents, generate_config, shared_contents
from gembulk.client.transport import new_session
from gembulk.records import CallFailed, MediaPart, ModelLimits, Outcome, SharedPart

if TYPE_CHECKING:
    import aiohttp

    from gembulk.settings import GenerationSettings

# The mime type Google's batch guide uploads JSONL with; Python's mimetypes cannot guess ".jsonl", and
# the SDK raises ValueError for an upload whose type it cannot guess.
BATCH_INPUT_MIME_TYPE = "jsonl"

T = TypeVar("T")
_CLIENT_TIMEOUT = object()  # GeminiClient._sdk: use the client's own timeout
# models.get answers of this process, by (base URL, digest of the key, model): see model_limits.
_MODEL_LIMITS: dict[tuple[str | None, str, str], ModelLimits] = {}


@dataclass(frozen=True)
class UploadedMedia:
    """A file the Files API holds, ready to reference: its name ("files/…") and the part that uses it."""

    file_name: str
    part: MediaPart


@dataclass(frozen=True)
class CacheEntry:
    """A cachedContents entry as the API describes it."""

    name: str  # "cachedContents/…"
    model: str  # without "models/"
    display_name: str | None
    tokens: int | None  # usageMetadata.totalTokenCount
    expires: float | None  # expireTime, seconds since the epoch


class GeminiClient:
    """google-genai in api-key mode with a transport chosen on purpose.

    Transport: the SDK silently switches its async calls to aiohttp whenever aiohttp is importable,
    and aiohttp is our dependency anyway, so we use it deliberately and hand the SDK our own session:
    its connector is sized to the concurrency cap (the SDK's own session is unlimited, and httpx2's
    default pool stops at 100). The SDK's retries stay off (`attempts=1`): that also disables its
    hidden 1-10 s sleep-and-retry on aiohttp connection errors. Retrying is the retry module's job.
    Vertex mode is refused explicitly, whatever GOOGLE_GENAI_USE_VERTEXAI says.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        max_connections: int,
        timeout: float | None,
        settings: GenerationSettings,
        paced: bool = False,
    ) -> None:
        self._api_key = api_key
        self._paced = paced
        self._base_url = base_url
        self._max_connections = max_connections
        self._timeout = timeout
        self.settings = settings
        self._config = generate_config(settings)
        self._configs: dict[int, tuple[GenerationSettings, Any]] = {}  # per-model variants (--context)
        self._session: aiohttp.ClientSession | None = None
        self._client: Client | None = None
        self._warmup_due = not paced  # an unpaced run warms the response models after its first request
        self._warmup: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> GeminiClient:
        self._session = new_session(self._max_connections)
        http_options = types.HttpOptions(
            base_url=self._base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
            aiohttp_client=self._session,
            **sdk_patches.shared_tls_options(),
        )
        self._client = Client(api_key=self._api_key, vertexai=False, http_options=http_options)
        sdk_patches.warm_request_models(self._config)
        if self._paced:
            sdk_patches.warm_response_models()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._warmup is not None:
            self._warmup.cancel()
        if self._session is not None:
            await self._session.close()

    @property
    def aio(self) -> Any:
        assert self._client is not None, "use GeminiClient as an async context manager"
        return self._client.aio

    async def generate(
        self,
        model: str,
        prompt: str,
        media: Sequence[MediaPart] = (),
        settings: GenerationSettings | None = None,
    ) -> Outcome:
        """One generateContent call, with the job's settings or a variant of them (`settings`: the shared
        context's parts or cache for this model). Returns the outcome of an answer; raises CallFailed
        without one."""
        if self._warmup_due:
            self._warmup_due = False
            self._warmup = sdk_patches.warm_response_models_soon()
        config, shared = self._config, ()
        if settings is not None:
            config, shared = self._config_for(settings), settings.shared
        try:
            async with asyncio.timeout(self._timeout):
                response = await self.aio.models.generate_content(
                    model=model, contents=contents(prompt, media, shared), config=config
                )
        except Exception as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        return outcome_from_response(response, parse_json=self.settings.json_schema is not None)

    def _config_for(self, settings: GenerationSettings) -> Any:
        """The config of a settings variant, built once: a variant lives as long as its cache (or the run)."""
        kept = self._configs.get(id(settings))
        if kept is None or kept[0] is not settings:
            kept = self._configs[id(settings)] = (settings, generate_config(settings))
        return kept[1]

    # -- Context caching: cachedContents and countTokens of the shared parts -------------------------

    async def count_shared_tokens(self, model: str, shared: Sequence[SharedPart]) -> int:
        """countTokens of the shared context's parts (the system instruction is counted apart)."""
        response = await self._sdk(
            self.aio.models.count_tokens(model=model, contents=shared_contents(shared))
        )
        return response.total_tokens or 0

    async def create_cache(
        self,
        model: str,
        *,
        system: str | None,
        shared: Sequence[SharedPart],
        ttl_seconds: float,
        display_name: str,
    ) -> CacheEntry:
        """cachedContents.create: the shared parts and the system instruction, kept for `ttl_seconds`."""
        config = types.CreateCachedContentConfig(
            contents=shared_contents(shared),
            system_instruction=system or None,
            ttl=_duration(ttl_seconds),
            display_name=display_name,
        )
        return _cache_entry(await self._sdk(self.aio.caches.create(model=model, config=config)))

    async def set_cache_ttl(self, name: str, ttl_seconds: float) -> CacheEntry:
        """cachedContents.patch of the TTL: the entry now expires `ttl_seconds` from now."""
        config = types.UpdateCachedContentConfig(ttl=_duration(ttl_seconds))
        return _cache_entry(await self._sdk(self.aio.caches.update(name=name, config=config)))

    async def delete_cache(self, name: str) -> None:
        await self._sdk(self.aio.caches.delete(name=name))

    async def list_caches(self) -> list[CacheEntry]:
        """Every cachedContents entry of this key (the API keeps few: they cost storage by the hour)."""

        async def listed() -> list[CacheEntry]:
            pager = await self.aio.caches.list(config=types.ListCachedContentsConfig(page_size=100))
            return [_cache_entry(found) async for found in pager]

        return await self._sdk(listed())

    # -- Files and Batch API ---------------------------------------------------------------------
    # Every call raises CallFailed on an HTTP error or a transport fault (the retry module decides what
    # that means); upload and download have no time limit, the others use the client's timeout.

    async def upload_file(self, path: str, *, display_name: str) -> str:
        """Upload a local file (resumable, sent by the SDK in 8 MiB chunks); returns its "files/…" name."""
        config = types.UploadFileConfig(mime_type=BATCH_INPUT_MIME_TYPE, display_name=display_name)
        return str((await self._upload(path, config)).name)

    async def _upload(self, file: str | IO[bytes], config: types.UploadFileConfig) -> types.File:
        """files.upload with no time limit; the answer names the file, else CallFailed."""
        try:
            uploaded = await self._sdk(self.aio.files.upload(file=file, config=config), timeout=None)
        except (ValueError, KeyError) as exc:
            # The SDK's own upload failures: no upload URL returned, or the upload never finalized.
            raise CallFailed("UPLOAD_FAILED", self._scrub(f"upload failed: {exc}"), transport=True) from exc
        if not uploaded.name:
            raise CallFailed("BAD_RESPONSE", "the upload answer names no file", transport=True)
        return uploaded

    async def upload_media(
        self, source: str | bytes | IO[bytes], mime_type: str, display_name: str
    ) -> UploadedMedia:
        """Upload an attachment (a path, bytes in memory, or an open file) and wait until it can be used.

        Video and some audio come back PROCESSING; a request that names such a file too early is
        refused, so the file is polled (1 s, growing to 10 s) within the client's timeout.
        """
        config = types.UploadFileConfig(mime_type=mime_type, display_name=display_name[:512])
        uploaded = await self._upload(io.BytesIO(source) if isinstance(source, bytes) else source, config)
        name = str(uploaded.name)
        delay = 1.0
        try:
            async with asyncio.timeout(self._timeout):
                while uploaded.state == types.FileState.PROCESSING:
                    await asyncio.sleep(delay)
                    delay = min(10.0, delay * 1.5)
                    uploaded = await self._sdk(self.aio.files.get(name=name))
        except TimeoutError:
            raise CallFailed(
                "DEADLINE_EXCEEDED", f"{name} was still PROCESSING after {self._timeout:g} s"
            ) from None
        if uploaded.state == types.FileState.FAILED:
            raise CallFailed("FILE_PROCESSING_FAILED", f"the Files API could not process {name}")
        if not uploaded.uri:
            raise CallFailed("BAD_RESPONSE", f"the upload answer gives {name} no URI", transport=True)
        return UploadedMedia(name, MediaPart(uploaded.mime_type or mime_type, file_uri=uploaded.uri))

    async def media_file(self, name: str) -> UploadedMedia:
        """An existing "files/…" name as a part: its URI and media type, from files.get."""
        found = await self._sdk(self.aio.files.get(name=name))
        if found.state == types.FileState.FAILED or not found.uri or not found.mime_type:
            raise CallFailed("FILE_NOT_USABLE", f"{name} is {enum_name(found.state)} with no usable URI")
        return UploadedMedia(str(found.name or name), MediaPart(found.mime_type, file_uri=found.uri))

    async def create_batch(self, model: str, file_name: str, *, display_name: str) -> str:
        """Create a batch job over an uploaded JSONL file; returns the job name "batches/…"."""
        config = types.CreateBatchJobConfig(display_name=display_name)
        job = await self._sdk(self.aio.batches.create(model=model, src=file_name, config=config))
        if not job.name:
            raise CallFailed("BAD_RESPONSE", "the batch create answer names no job", transport=True)
        return str(job.name)

    async def get_batch(self, name: str) -> dict[str, Any]:
        """The raw long-running Operation JSON of a batch job (name "batches/…").

        Raw on purpose, through the SDK's private `_api_client.async_request` (same transport, key and
        error handling): `batches.get()` maps only part of the Operation (no batchStats, no top-level
        error), renames BATCH_STATE_* to JOB_STATE_*, and raises a pydantic ValidationError when an
        inline per-request error carries google.rpc detail objects (its `JobError.details` is list[str]).
        """
        response = await self._sdk(self._api_client.async_request("get", name, {}))
        return _json_object(response.body)

    async def list_batches(self, *, page_size: int, page_token: str | None = None) -> dict[str, Any]:
        """One raw page of GET batches: {"operations": [...], "nextPageToken": "..."} (raw, as get_batch)."""
        query: dict[str, Any] = {"pageSize": page_size}
        if page_token:
            query["pageToken"] = page_token
        response = await self._sdk(self._api_client.async_request("get", f"batches?{urlencode(query)}", {}))
        return _json_object(response.body)

    async def cancel_batch(self, name: str) -> None:
        await self._sdk(self.aio.batches.cancel(name=name))

    async def download_file(self, name: str, destination: str) -> None:
        """Stream a generated file (e.g. a batch's "files/batch-…" results) to a local path."""
        await self._sdk(self.aio.files.download(file=name, destination=destination), timeout=None)

    async def delete_file(self, name: str) -> None:
        await self._sdk(self.aio.files.delete(name=name))

    @property
    def _api_client(self) -> Any:
        assert self._client is not None, "use GeminiClient as an async context manager"
        return self._client._api_client

    async def _sdk(self, call: Awaitable[T], *, timeout: float | object | None = _CLIENT_TIMEOUT) -> T:
        """Await an SDK call with the client's timeout (or the one given; None: no limit), translating
        its exceptions."""
        limit = self._timeout if timeout is _CLIENT_TIMEOUT else timeout
        try:
            async with asyncio.timeout(limit if isinstance(limit, float | int) else None):
                return await call
        except Exception as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def count_tokens(self, model: str, text: str) -> int:
        """countTokens for one text (api-key mode cannot count a system instruction with it)."""
        try:
            async with asyncio.timeout(self._timeout):
                response = await self.aio.models.count_tokens(model=model, contents=text)
        except Exception as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        return response.total_tokens or 0

    async def model_limits(self, model: str, *, timeout: float | None) -> ModelLimits:
        """models.get: the model's inputTokenLimit and outputTokenLimit (None where the answer has none).

        Answers are kept for the life of the process, per endpoint, key and model: a run with several
        models asks once for each, and a second run in the same process does not ask again.
        """
        key = (self._base_url, hashlib.sha256(self._api_key.encode()).hexdigest()[:16], model)
        known = _MODEL_LIMITS.get(key)
        if known is None:
            found = await self._sdk(self.aio.models.get(model=model), timeout=timeout)
            known = _MODEL_LIMITS[key] = ModelLimits(
                found.input_token_limit, found.output_token_limit, "models.get"
            )
        return known

    def translate(self, exc: BaseException) -> BaseException:
        """Turn an SDK or transport exception into CallFailed; leave cancellation and bugs alone."""
        return translate(exc, api_key=self._api_key, timeout=self._timeout)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._api_key)


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def _cache_entry(found: types.CachedContent) -> CacheEntry:
    if not found.name:
        raise CallFailed("BAD_RESPONSE", "the cachedContents answer names no entry", transport=True)
    expires = found.expire_time.timestamp() if isinstance(found.expire_time, datetime) else None
    usage = found.usage_metadata
    return CacheEntry(
        name=str(found.name),
        model=str(found.model or "").removeprefix("models/"),
        display_name=found.display_name,
        tokens=usage.total_token_count if usage is not None else None,
        expires=expires,
    )


def _json_object(body: str | None) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except json.JSONDecodeError as exc:
        raise CallFailed("BAD_RESPONSE", "the server answered 200 with a body that is not JSON") from exc
    if not isinstance(value, dict):
        raise CallFailed("BAD_RESPONSE", "the server answered 200 with JSON that is not an object")
    return value
