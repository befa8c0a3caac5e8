"""The media stage: a row's attachments made into request parts (read, downloaded, uploaded) when sent."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp

from gembulk.attachments import file_digest, media_type
from gembulk.client import GeminiClient, environment_routes_requests
from gembulk.records import Attachment, CallFailed, MediaPart, PromptRequest, RowError
from gembulk.retry import RetryPolicy, Verdict, call_with_retries, classify

logger = logging.getLogger(__name__)


# Gemini takes at most 20 MB in one request, and inline bytes travel as base64 (4/3 larger): 14 MiB of
# attachments per request stay under it with room for the prompt. Larger ones go through the Files API.
DEFAULT_INLINE_LIMIT = 14 * 1024 * 1024
# The Files API's own cap on one file.
MAX_ATTACHMENT_BYTES = 2 * 1024**3
_CHUNK = 1 << 16
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/unknown"})


class AttachmentFailed(Exception):
    """This row's media could not be had (a URL that failed, an upload refused): a failed row, not a run."""

    def __init__(self, error: RowError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Loaded:
    """One attachment fetched as far as needed: its bytes in memory, or a path on disk."""

    attachment: Attachment
    mime_type: str
    size: int
    data: bytes | None = None
    path: str | None = None
    temporary: bool = False  # a download spooled to disk: deleted once sent


class _Once:
    """Shares one in-flight call per key (a content hash, a file name), and its result afterwards."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[MediaPart]] = {}

    async def get(self, key: str, make: Callable[[], Awaitable[MediaPart]]) -> MediaPart:
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = asyncio.ensure_future(make())
            # A failure is not remembered: the next row with the same media tries again.
            future.add_done_callback(lambda done: self._forget_failed(key, done))
        return await asyncio.shield(future)

    def _forget_failed(self, key: str, future: asyncio.Future[MediaPart]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._futures.pop(key, None)


class MediaResolver:
    """Turns attachments into parts: local files are read, URLs downloaded in a bounded pool, media
    above the inline limit uploaded through the Files API once per content hash, and "files/…" names
    looked up once. With `inline_limit=0` (the Batch API) everything is uploaded and referenced.
    """

    def __init__(
        self,
        client: GeminiClient,
        policy: RetryPolicy,
        *,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        downloads: int,
        timeout: float | None = None,
        scratch_dir: str | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._inline_limit = inline_limit
        self._download_slots = asyncio.Semaphore(downloads)
        self.window = downloads  # rows an executor resolves ahead of its workers
        self._timeout = timeout
        self._scratch_dir = scratch_dir
        self._session: aiohttp.ClientSession | None = None
        self._uploads = _Once()
        self._lookups = _Once()
        self.uploaded: list[str] = []  # "files/…" names this run created, for deleting afterwards

    async def __aenter__(self) -> MediaResolver:
        timeout = aiohttp.ClientTimeout(total=self._timeout, sock_connect=30)
        self._session = aiohttp.ClientSession(timeout=timeout, trust_env=environment_routes_requests())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def delete_uploads(self, report: Callable[[str], None]) -> None:
        """Delete the files this run uploaded, reporting any that stay (they expire after 48 h anyway)."""
        for name in self.uploaded:
            try:
                await self._client.delete_file(name)
            except CallFailed as failure:
                report(f"could not delete the uploaded attachment {name} (it expires after 48 h): {failure}")
        self.uploaded = []

    async def resolve(self, request: PromptRequest) -> PromptRequest:
        """The request with its media parts, in attachment order. Raises AttachmentFailed for this row,
        or CallFailed when the API refuses in a way that stops the run (the caller classifies it)."""
        if not request.attachments:
            return request
        loaded: list[_Loaded] = []
        parts: list[MediaPart | None] = []
        try:
            for attachment in request.attachments:
                if attachment.kind == "file":
                    found = self._lookups.get(attachment.value, lambda a=attachment: self._look_up(a))
                    parts.append(await found)
                    continue
                item = await (self._download(attachment) if attachment.kind == "url" else _local(attachment))
                loaded.append(item)
                parts.append(None)
            inline = {id(item) for item in self._choose_inline(loaded)}
            fetched = iter([await self._part(item, id(item) in inline) for item in loaded])
            media = tuple(part if part is not None else next(fetched) for part in parts)
        finally:
            for item in loaded:
                if item.temporary and item.path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)
        return replace(request, media=media)

    def _choose_inline(self, loaded: list[_Loaded]) -> list[_Loaded]:
        """The smallest attachments first, while the request's inline total stays within the limit."""
        chosen: list[_Loaded] = []
        total = 0
        for item in sorted(loaded, key=lambda i: i.size):
            if total + item.size > self._inline_limit:
                break
            chosen.append(item)
            total += item.size
        return chosen

    async def _part(self, item: _Loaded, inline: bool) -> MediaPart:
        try:
            if inline:
                data = item.data if item.data is not None else await asyncio.to_thread(_read, item.path)
                return MediaPart(item.mime_type, data=data)
            if item.data is not None:
                digest = hashlib.sha256(item.data).hexdigest()
            else:
                assert item.path is not None
                digest = await asyncio.to_thread(file_digest, item.path)
        except OSError as exc:  # the file went away or became unreadable since the run's check
            message = f"{item.attachment.describe()}: {exc.strerror or exc}"
            raise AttachmentFailed(RowError("ATTACHMENT_UNREADABLE", message)) from exc
        return await self._uploads.get(f"{item.mime_type}:{digest}", lambda: self._upload(item))

    async def _upload(self, item: _Loaded) -> MediaPart:
        source: str | bytes = item.data if item.data is not None else str(item.path)
        name = os.path.basename(item.attachment.value.split("?")[0]) or "attachment"
        try:
            uploaded = await call_with_retries(
                self._policy, lambda: self._client.upload_media(source, item.mime_type, name)
            )
        except CallFailed as failure:
            raise self._row_failure(failure, "ATTACHMENT_UPLOAD_FAILED", f"uploading {name}") from failure
        if uploaded.file_name:
            self.uploaded.append(uploaded.file_name)
        return uploaded.part

    async def _look_up(self, attachment: Attachment) -> MediaPart:
        try:
            found = await call_with_retries(self._policy, lambda: self._client.media_file(attachment.value))
        except CallFailed as failure:
            if failure.code in (403, 404) and failure.reason is None:
                # The real API answers 403 "...or it may not exist" for a name it does not hold.
                message = f"{attachment.describe()}: {failure.message}"
                raise AttachmentFailed(RowError("ATTACHMENT_NOT_FOUND", message, failure.code)) from failure
            raise self._row_failure(failure, "ATTACHMENT_NOT_FOUND", attachment.describe()) from failure
        return found.part

    def _row_failure(self, failure: CallFailed, status: str, what: str) -> BaseException:
        if classify(failure) is Verdict.FATAL:
            return failure  # a bad key is the run's problem, not this row's
        message = f"{what}: {failure.status}: {failure.message}"
        return AttachmentFailed(RowError(status, message, failure.code))

    async def _download(self, attachment: Attachment) -> _Loaded:
        async with self._download_slots:
            try:
                loaded = await call_with_retries(self._policy, lambda: self._fetch(attachment))
            except CallFailed as failure:
                error = RowError("ATTACHMENT_DOWNLOAD_FAILED", f"{attachment.describe()}: {failure.message}")
                raise AttachmentFailed(replace(error, code=failure.code)) from failure
        return loaded

    async def _fetch(self, attachment: Attachment) -> _Loaded:
        """One GET: small answers stay in memory, larger ones are spooled to a temporary file."""
        assert self._session is not None, "use MediaResolver as an async context manager"
        url = attachment.value
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    message = f"GET answered {response.status} {response.reason}"
                    raise CallFailed(f"HTTP_{response.status}", message, code=response.status)
                mime = _answer_type(response.headers.get("Content-Type")) or attachment.mime_type
                if mime is None:
                    message = f"{attachment.describe()}: the answer names no media type"
                    raise AttachmentFailed(RowError("ATTACHMENT_UNKNOWN_TYPE", message))
                return await self._receive(attachment, mime, response.content.iter_chunked(_CHUNK))
        except (aiohttp.ClientError, OSError) as exc:
            message = f"download failed: {type(exc).__name__}: {exc}"
            raise CallFailed("UNAVAILABLE", message, transport=True) from exc
        except TimeoutError as exc:
            message = f"no answer within {self._timeout:g} s"
            raise CallFailed("DEADLINE_EXCEEDED", message, transport=True) from exc

    async def _receive(self, attachment: Attachment, mime: str, chunks: AsyncIterator[bytes]) -> _Loaded:
        buffer = bytearray()
        handle = None
        path = None
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_ATTACHMENT_BYTES:
                    raise AttachmentFailed(
                        RowError("ATTACHMENT_TOO_LARGE", f"{attachment.describe()}: larger than 2 GB")
                    )
                if handle is None and size > self._inline_limit:
                    # Too big to inline: it will be uploaded from disk, so it need not sit in memory.
                    fd, path = tempfile.mkstemp(prefix=".gembulk-media-", dir=self._scratch_dir)
                    handle = os.fdopen(fd, "wb")
                    await asyncio.to_thread(handle.write, bytes(buffer))
                    buffer = bytearray()
                if handle is not None:
                    await asyncio.to_thread(handle.write, chunk)
                else:
                    buffer += chunk
        except BaseException:
            if handle is not None:
                handle.close()
                os.unlink(str(path))
            raise
        if handle is None:
            return _Loaded(attachment, mime, size, data=bytes(buffer))
        handle.close()
        return _Loaded(attachment, mime, size, path=path, temporary=True)


async def resolve_in_order(
    requests: AsyncIterator[PromptRequest], resolver: MediaResolver, window: int
) -> AsyncIterator[tuple[PromptRequest, PromptRequest | RowError]]:
    """Resolve up to `window` requests at once, yielding them in input order: each with its media, or
    the error that failed the row. A CallFailed (the run must stop) is raised from here."""

    async def one(request: PromptRequest) -> tuple[PromptRequest, PromptRequest | RowError]:
        try:
            return request, await resolver.resolve(request)
        except AttachmentFailed as failed:
            return request, failed.error

    pending: collections.deque[asyncio.Task[tuple[PromptRequest, PromptRequest | RowError]]] = (
        collections.deque()
    )
    try:
        async for request in requests:
            pending.append(asyncio.create_task(one(request)))
            if len(pending) >= window:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _local(attachment: Attachment) -> _Loaded:
    # The run's check found the file and its type; a file removed since fails only its own rows.
    try:
        size = os.stat(attachment.value).st_size
    except OSError as exc:
        raise AttachmentFailed(
            RowError("ATTACHMENT_NOT_FOUND", f"{attachment.describe()}: {exc.strerror}")
        ) from exc
    mime = attachment.mime_type or media_type(attachment.value) or "application/octet-stream"
    return _Loaded(attachment, mime, size, path=attachment.value)


def _read(path: str | None) -> bytes:
    assert path is not None
    with open(path, "rb") as handle:
        return handle.read()


def _answer_type(header: str | None) -> str | None:
    if not header:
        return None
    mime = header.split(";", 1)[0].strip().lower()
    return None if not mime or mime in _GENERIC_TYPES else mime
