"""The only module that talks to google-genai: builds the client, sends one request, reads the answer,
and makes the Files and Batch API calls the batch executor needs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import ssl
import typing
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode
from urllib.request import getproxies

import aiohttp
import pydantic
from google.genai import Client, _api_client, _common, errors, types
from google.genai import models as _sdk_models

from gembulk.records import CallFailed, MediaPart, Outcome, QuotaViolation, RowError, Usage
from gembulk.tokens import MEDIA_TOKENS as MEDIA_TOKENS  # re-exported: it lived here before
from gembulk.tokens import estimate_tokens as estimate_tokens  # re-exported, as MEDIA_TOKENS

logger = logging.getLogger(__name__)

# A finish reason that still comes with a usable answer.
OK_FINISH_REASONS = frozenset({"STOP", "MAX_TOKENS", "FINISH_REASON_UNSPECIFIED"})
# The mime type Google's batch guide uploads JSONL with; Python's mimetypes cannot guess ".jsonl", and
# the SDK raises ValueError for an upload whose type it cannot guess.
BATCH_INPUT_MIME_TYPE = "jsonl"

T = TypeVar("T")
_CLIENT_TIMEOUT = object()  # GeminiClient._sdk: use the client's own timeout
# The SDK builds each response model (pydantic, `defer_build`) when the first answer arrives: about
# 40 ms of CPU that every answer of the first wave waits for. Building them this long after the first
# request starts puts that work where the client is waiting for answers anyway (the first wave is on
# the wire by then); if an answer comes sooner, it builds them as before and the warm-up does nothing.
# Paced runs (a --rpm/--tpm from the start) build them before the first request instead: ~20 ms of CPU
# at an arbitrary moment could hold back a paced request past its slot, squeezing the quota window of
# the request one window later (measured: the warm-up at 0.1 s delayed the quota benchmark's third
# request by 10.6 ms, more than the 1 % pacing margin of a 1 s window).
RESPONSE_WARMUP_DELAY = 0.1
# A typical answer, read through the same SDK conversion as a real one to build its models.
_WARMUP_ANSWER: dict[str, Any] = {
    "candidates": [
        {"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ],
    "usageMetadata": {
        "promptTokenCount": 1,
        "candidatesTokenCount": 1,
        "totalTokenCount": 2,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1}],
    },
    "modelVersion": "warm-up",
    "responseId": "warm-up",
}


@dataclass(frozen=True)
class GenerationSettings:
    """Per-job request settings, turned into one GenerateContentConfig shared by every row."""

    system: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    json_schema: dict[str, Any] | None = None

    def to_config(self) -> types.GenerateContentConfig:
        return _SharedConfig(
            system_instruction=self.system,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
            response_mime_type="application/json" if self.json_schema is not None else None,
            response_json_schema=self.json_schema,
            # A continuation hop would be a second, unscheduled request the rate limiter never saw.
            automatic_continuation=False,
        )

    def to_request_json(self, prompt: str, media: Sequence[MediaPart] = ()) -> dict[str, Any]:
        """The same request as a GenerateContentRequest in proto-JSON (for Batch API input lines)."""
        parts = [_media_json(part) for part in media]
        parts.append({"text": prompt})
        request: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
        if self.system:
            request["systemInstruction"] = {"role": "user", "parts": [{"text": self.system}]}
        generation: dict[str, Any] = {}
        if self.temperature is not None:
            generation["temperature"] = self.temperature
        if self.max_output_tokens is not None:
            generation["maxOutputTokens"] = self.max_output_tokens
        if self.json_schema is not None:
            generation["responseMimeType"] = "application/json"
            generation["responseJsonSchema"] = self.json_schema
        if generation:
            request["generationConfig"] = generation
        return request


def _media_json(part: MediaPart) -> dict[str, Any]:
    if part.file_uri is not None:
        return {"fileData": {"mimeType": part.mime_type, "fileUri": part.file_uri}}
    assert part.data is not None
    return {"inlineData": {"mimeType": part.mime_type, "data": base64.b64encode(part.data).decode()}}


def _contents(prompt: str, media: Sequence[MediaPart]) -> str | list[types.Content]:
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


@dataclass(frozen=True)
class UploadedMedia:
    """A file the Files API holds, ready to reference: its name ("files/…") and the part that uses it."""

    file_name: str
    part: MediaPart


class _SharedConfig(types.GenerateContentConfig):
    """A config the SDK may copy cheaply: one instance serves every request of a run.

    google-genai deep-copies the config on every call (`model_copy(deep=True)`), about 0.2 ms of CPU
    for a config holding a JSON schema. Nothing in it is changed per request, by gembulk or by the SDK
    for a config without tools, so a shallow copy gives every call the same request at no cost.
    """

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> _SharedConfig:
        return self.model_copy()


def _fast_membership() -> None:
    """Give the SDK's models a fast `in`: the same answers, without its hot-path cost.

    google-genai converts every request (its config, contents and parts) through ~90 `get_value_by_path`
    look-ups, each testing `key in model` first. A pydantic model has no `__contains__`, so Python walks
    its (name, value) pairs looking for a plain string, which never matches: the answer is always False,
    after iterating every field. Answering False at once changes no request (tests/test_client.py checks
    the invariant on the SDK's models) and saves about 0.5 ms of CPU per request, a third of the SDK's
    cost at zero latency (bench/README.md). Skipped if a future SDK defines `__contains__` itself.
    """
    if "__contains__" not in vars(_common.BaseModel):
        _common.BaseModel.__contains__ = lambda self, key: False  # type: ignore[method-assign]


_fast_membership()

_UNPLANNED = object()


def _fast_response_pruning() -> None:
    """Give the SDK's answer pruning a per-model plan: the same fields dropped, without its per-key cost.

    Before validating an answer, google-genai drops the fields its models do not know
    (`_common._remove_extra_fields`), walking the answer recursively. For every key of every nested
    object it rebuilds the model's alias map, unwraps the field's annotation and looks up the nested
    model type: about a fifth of the SDK's CPU per answer, all of it the same for every answer. Here
    each (model, key) is worked out once, with the SDK's own rule and helpers, and remembered; keys are
    still dropped, kept and descended into exactly as before (tests/test_client.py compares both on
    answers with unknown fields at every level). A model whose fields cannot be resolved yet goes
    through the SDK's own function, as do non-model arguments. Skipped if the SDK's helpers change.
    """
    original = getattr(_common, "_remove_extra_fields", None)
    as_model = getattr(_common, "_as_base_model_type", None)
    is_struct = getattr(_common, "_is_struct_type", None)
    if original is None or as_model is None or is_struct is None:
        return
    plans: dict[type, dict[str, tuple[type | None, type | None] | None]] = {}

    def plan_key(model: type[pydantic.BaseModel], key: str) -> tuple[type | None, type | None] | None:
        # The SDK's rule, step by step: None drops the key; else (model of a dict value, of list items).
        fields = model.model_fields
        aliases = {info.alias: name for name, info in fields.items()}
        if key not in fields and key not in aliases:
            return None
        annotation = fields[aliases.get(key, key)].annotation
        if typing.get_origin(annotation) is typing.Union:
            annotation = typing.get_args(annotation)[0]
        item_type = None
        if not is_struct(annotation):
            item_args = typing.get_args(annotation)
            item_type = as_model(item_args[0] if item_args else None)
        return as_model(annotation), item_type

    def remove_extra_fields(model: Any, response: dict[str, object]) -> None:
        plan = plans.get(model)
        if plan is None:
            if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
                return original(model, response)
            model.model_rebuild(raise_errors=False)  # as the SDK does: resolves forward references
            if not model.__pydantic_complete__:
                return original(model, response)
            plan = plans[model] = {}
        for key, value in list(response.items()):
            step = plan.get(key, _UNPLANNED)
            if step is _UNPLANNED:
                step = plan[key] = plan_key(model, key)
            if step is None:
                response.pop(key)
            elif isinstance(value, dict):
                if step[0] is not None:
                    remove_extra_fields(step[0], value)
            elif isinstance(value, list) and step[1] is not None:
                for item in value:
                    if isinstance(item, dict):
                        remove_extra_fields(step[1], item)
        return None

    remove_extra_fields.__wrapped__ = original  # type: ignore[attr-defined]  # for the invariant test
    _common._remove_extra_fields = remove_extra_fields


_fast_response_pruning()


def environment_routes_requests() -> bool:
    """Whether aiohttp's `trust_env` could change any request: a proxy variable or a netrc file.

    With `trust_env=True`, aiohttp looks both up again for every request, each in a thread
    (`run_in_executor` for netrc, `to_thread` for the proxy): two hops through the default pool of
    6 threads per request. A wave of 100 answers queued 200 of them, about 40 ms a wave at `-c 100`
    (bench/README.md). With no proxy variable (the schemes aiohttp reads) and no netrc file, every
    one of those look-ups finds nothing, so `trust_env=False` sends the same requests. Checked once
    per client; when in doubt (any proxy variable, a netrc file present or named), trust the
    environment as before.
    """
    if any(scheme in getproxies() for scheme in ("http", "https", "ws", "wss")):
        return True
    if os.environ.get("NETRC") is not None:
        return True
    try:
        home = Path.home()
    except RuntimeError:  # no resolvable home directory: aiohttp finds no netrc either
        return False
    return any((home / name).exists() for name in (".netrc", "_netrc"))  # _netrc: aiohttp on Windows


def shared_tls_options() -> dict[str, Any]:
    """HttpOptions fields that give every transport the SDK builds one TLS context: the SDK's own.

    genai.Client builds three identical-purpose contexts on construction (for aiohttp, websockets and
    its httpx clients), each loading the CA bundle: about 20 ms apiece, before the first request.
    Handing it the context it would build for aiohttp (its own `_ensure_aiohttp_ssl_ctx`, so the same
    CA bundle and SSL_CERT_FILE/SSL_CERT_DIR handling) makes it build none. aiohttp and websockets get
    the context they would have had; the httpx clients serve only the SDK's sync methods, which
    gembulk never calls. Skipped (the SDK builds its own, as before) if that private helper changes.
    """
    make = getattr(_api_client.BaseApiClient, "_ensure_aiohttp_ssl_ctx", None)
    if make is None:
        return {}
    try:
        context = make(types.HttpOptions()).get("ssl")
    except Exception:  # a changed SDK helper: let the SDK do its own
        return {}
    if not isinstance(context, ssl.SSLContext):
        return {}
    return {"async_client_args": {"ssl": context}, "client_args": {"verify": context}}


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
        self._config = settings.to_config()
        self._session: aiohttp.ClientSession | None = None
        self._client: Client | None = None
        self._warmup: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> GeminiClient:
        connector = aiohttp.TCPConnector(limit=self._max_connections + 4, limit_per_host=0)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=environment_routes_requests())
        http_options = types.HttpOptions(
            base_url=self._base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
            aiohttp_client=self._session,
            **shared_tls_options(),
        )
        self._client = Client(api_key=self._api_key, vertexai=False, http_options=http_options)
        # The first request would build the SDK's request models itself (~15 ms) and so reach the server
        # later than its pacing slot; a window quota then sees the request one window later arrive too
        # soon after it (the 429 the quota benchmark met at every start). Built here, on the way anyway.
        _warm_request_models(self._config)
        if self._paced:
            _warm_response_models()
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

    async def generate(self, model: str, prompt: str, media: Sequence[MediaPart] = ()) -> Outcome:
        """One generateContent call. Returns the outcome of an answer; raises CallFailed without one."""
        if self._warmup is None and not self._paced:
            self._warmup = asyncio.get_running_loop().call_later(RESPONSE_WARMUP_DELAY, _warm_response_models)
        try:
            async with asyncio.timeout(self._timeout):
                response = await self.aio.models.generate_content(
                    model=model, contents=_contents(prompt, media), config=self._config
                )
        except Exception as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        return outcome_from_response(response, parse_json=self.settings.json_schema is not None)

    # -- Files and Batch API ---------------------------------------------------------------------
    # Every call raises CallFailed on an HTTP error or a transport fault (the retry module decides what
    # that means); upload and download have no time limit, the others use the client's timeout.

    async def upload_file(self, path: str, *, display_name: str) -> str:
        """Upload a local file (resumable, sent by the SDK in 8 MiB chunks); returns its "files/…" name."""
        config = types.UploadFileConfig(mime_type=BATCH_INPUT_MIME_TYPE, display_name=display_name)
        return str((await self._upload(path, config)).name)

    async def _upload(self, file: str | io.BytesIO, config: types.UploadFileConfig) -> types.File:
        """files.upload with no time limit; the answer names the file, else CallFailed."""
        try:
            uploaded = await self._sdk(self.aio.files.upload(file=file, config=config), timeout=None)
        except (ValueError, KeyError) as exc:
            # The SDK's own upload failures: no upload URL returned, or the upload never finalized.
            raise CallFailed("UPLOAD_FAILED", self._scrub(f"upload failed: {exc}"), transport=True) from exc
        if not uploaded.name:
            raise CallFailed("BAD_RESPONSE", "the upload answer names no file", transport=True)
        return uploaded

    async def upload_media(self, source: str | bytes, mime_type: str, display_name: str) -> UploadedMedia:
        """Upload an attachment (a path, or bytes in memory) and wait until the file can be used.

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
            raise CallFailed("FILE_NOT_USABLE", f"{name} is {_enum_name(found.state)} with no usable URI")
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

    def translate(self, exc: BaseException) -> BaseException:
        """Turn an SDK or transport exception into CallFailed; leave cancellation and bugs alone."""
        if isinstance(exc, errors.APIError):
            return call_failed_from_api_error(exc, self._api_key)
        if isinstance(exc, TimeoutError):
            return CallFailed("DEADLINE_EXCEEDED", f"no answer within {self._timeout:g} s", transport=True)
        if isinstance(exc, aiohttp.ClientError):
            return CallFailed("UNAVAILABLE", self._scrub(f"connection error: {exc!r}"), transport=True)
        if isinstance(exc, json.JSONDecodeError):
            return CallFailed(
                "BAD_RESPONSE", "the server answered 200 with a body that is not JSON", transport=True
            )
        if isinstance(exc, OSError):
            return CallFailed("UNAVAILABLE", self._scrub(f"network error: {exc}"), transport=True)
        return exc

    def _scrub(self, text: str) -> str:
        return scrub(text, self._api_key)


def _json_object(body: str | None) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except json.JSONDecodeError as exc:
        raise CallFailed("BAD_RESPONSE", "the server answered 200 with a body that is not JSON") from exc
    if not isinstance(value, dict):
        raise CallFailed("BAD_RESPONSE", "the server answered 200 with JSON that is not an object")
    return value


def scrub(text: str, secret: str) -> str:
    """Never let the API key reach a record, a log line or an error message."""
    return text.replace(secret, "***") if secret else text


def call_failed_from_api_error(exc: errors.APIError, api_key: str = "") -> CallFailed:
    """Extract code, status, message, ErrorInfo reason, RetryInfo delay and QuotaFailure from an APIError."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    reason = None
    retry_delay = None
    violations: list[QuotaViolation] = []
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo"):
            reason = detail.get("reason")
        elif kind.endswith("google.rpc.RetryInfo"):
            retry_delay = parse_duration(detail.get("retryDelay"))
        elif kind.endswith("google.rpc.QuotaFailure"):
            for v in detail.get("violations") or []:
                if isinstance(v, dict) and v.get("quotaId"):
                    limit, metric = _int_or_none(v.get("quotaValue")), str(v.get("quotaMetric") or "")
                    violations.append(QuotaViolation(str(v["quotaId"]), limit, metric))
    status = exc.status or error.get("status") or f"HTTP_{exc.code}"
    message = scrub(str(exc.message or error.get("message") or ""), api_key).strip()
    return CallFailed(
        str(status),
        message,
        code=exc.code,
        reason=reason,
        retry_delay=retry_delay,
        violations=tuple(violations),
    )


def parse_duration(value: object) -> float | None:
    """google.protobuf.Duration in JSON: "37s", "0.5s", "45.837906927s"."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def usage_from(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage | None:
    if metadata is None:
        return None
    return Usage(
        prompt_tokens=metadata.prompt_token_count or 0,
        output_tokens=metadata.candidates_token_count or 0,
        thoughts_tokens=metadata.thoughts_token_count or 0,
        total_tokens=metadata.total_token_count or 0,
    )


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def outcome_from_response(response: types.GenerateContentResponse, *, parse_json: bool) -> Outcome:
    """Classify an HTTP-200 answer: text, or a row failure that names its reason (never retried).

    The SDK returns `text=None` without raising for blocked prompts, SAFETY/RECITATION finishes,
    empty candidate lists and thinking that used up the token budget, so every case is checked here.
    """
    usage = usage_from(response.usage_metadata)
    version = response.model_version
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _enum_name(feedback.block_reason)
        return _failed(f"BLOCKED_{reason}", f"the prompt was blocked (blockReason {reason})", usage, version)
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None:
        return _failed("EMPTY_RESPONSE", "the answer has no candidates", usage, version)
    finish = _enum_name(candidate.finish_reason)
    text = response.text
    if finish is not None and finish not in OK_FINISH_REASONS:
        return _failed(finish, f"the answer was withheld (finishReason {finish})", usage, version, finish)
    if not text:
        why = (
            "the token budget ran out before any text" if finish == "MAX_TOKENS" else "the answer has no text"
        )
        return _failed(finish or "EMPTY_RESPONSE", why, usage, version, finish)
    parsed = None
    if parse_json:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"the answer is not valid JSON ({exc.msg}): {text[:200]}"
            return _failed("INVALID_JSON", message, usage, version, finish)
    return Outcome(
        text=text, error=None, finish_reason=finish, usage=usage, model_version=version, parsed=parsed
    )


def outcome_from_json(raw: Any, *, parse_json: bool) -> Outcome:
    """Classify a GenerateContentResponse given as proto-JSON (a batch result line) exactly as online.

    The SDK's own wire-to-type conversion is used (the private `_GenerateContentResponse_from_mldev`
    that generate_content applies, then `_from_response`, which drops fields this SDK does not know),
    so camelCase keys, unknown fields and enum names are read the same way as for an online answer.
    """
    if not isinstance(raw, dict):
        return _failed("BAD_RESULT", "the batch result line has no response object", None, None)
    convert = getattr(_sdk_models, "_GenerateContentResponse_from_mldev", None)
    try:
        converted = convert(raw) if convert is not None else dict(raw)
        response = types.GenerateContentResponse._from_response(response=converted, kwargs={})
    except (pydantic.ValidationError, TypeError, ValueError) as exc:
        message = f"the batch result is not a GenerateContentResponse: {str(exc).splitlines()[0]}"
        return _failed("BAD_RESULT", message, None, None)
    return outcome_from_response(response, parse_json=parse_json)


def _warm_request_models(config: types.GenerateContentConfig) -> None:
    """Build the SDK's request models before the first request (see GeminiClient.__aenter__)."""
    parameters = getattr(types, "_GenerateContentParameters", None)  # private: the model each call builds
    try:
        contents = [types.UserContent(parts=[types.Part(text="x")])]
        if parameters is not None:
            parameters(model="warm-up", contents=contents, config=config)
    except Exception:  # only a warm-up: the first request builds whatever is left
        logger.debug("request model warm-up failed", exc_info=True)


def _warm_response_models() -> None:
    """Build the SDK's response models ahead of the first answer (see RESPONSE_WARMUP_DELAY)."""
    try:
        outcome_from_json(_WARMUP_ANSWER, parse_json=False)
    except Exception:  # only a warm-up: the first real answer builds whatever is left
        logger.debug("response model warm-up failed", exc_info=True)


def _failed(
    status: str, message: str, usage: Usage | None, version: str | None, finish: str | None = None
) -> Outcome:
    return Outcome(
        text=None,
        error=RowError(status=status, message=message),
        finish_reason=finish,
        usage=usage,
        model_version=version,
    )
