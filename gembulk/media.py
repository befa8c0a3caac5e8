"""The media stage: a row's attachments made into request parts (read, downloaded, uploaded) when sent."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import BinaryIO

from gembulk import confined
from gembulk.attachments import media_type
from gembulk.client import GeminiClient, UploadedMedia
from gembulk.downloads import Downloader
from gembulk.records import Attachment, AttachmentFailed, CallFailed, MediaPart, PromptRequest, RowError
from gembulk.retry import RetryPolicy, Verdict, call_with_retries, classify

__all__ = ["DEFAULT_INLINE_LIMIT", "AttachmentFailed", "MediaResolver", "resolve_in_order"]

logger = logging.getLogger(__name__)


# Gemini takes at most 20 MB in one request, and inline bytes travel as base64 (4/3 larger): 14 MiB of
# attachments per request stay under it with room for the prompt. Larger ones go through the Files API.
DEFAULT_INLINE_LIMIT = 14 * 1024 * 1024
# The Files API's own cap on one file: no download may be larger, whatever --max-download says.
MAX_ATTACHMENT_BYTES = 2 * 1024**3


@dataclass
class _Loaded:
    """One attachment fetched as far as needed: its bytes in memory, a downloaded temporary file, or a local
    file (read from inside its attachment folder only, each time it is read)."""

    attachment: Attachment
    mime_type: str
    size: int
    data: bytes | None = None
    path: str | None = None  # a temporary file (a download spooled to disk): deleted once sent


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
        scratch_prefix: str = ".gembulk-media-",
        max_download: int | None = None,
        allow_private_urls: bool = False,
    ) -> None:
        self._client = client
        self._policy = policy
        self._inline_limit = inline_limit
        self._download_slots = asyncio.Semaphore(downloads)
        self.window = downloads  # rows an executor resolves ahead of its workers
        self._timeout = timeout  # a URL's whole download, retries and redirects included
        cap = DEFAULT_INLINE_LIMIT if max_download is None else max_download
        self._downloader = Downloader(
            max_bytes=min(cap, MAX_ATTACHMENT_BYTES),
            spool_above=inline_limit,
            allow_private=allow_private_urls,
            scratch_dir=scratch_dir,
            scratch_prefix=scratch_prefix,
        )
        self._uploads = _Once()
        self._lookups = _Once()
        self.uploaded: list[str] = []  # "files/…" names this run created, for deleting afterwards

    async def __aenter__(self) -> MediaResolver:
        await self._downloader.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._downloader.__aexit__(*exc_info)

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
                if attachment.kind == "scheme":  # the run's check refuses these: never read as a path
                    raise AttachmentFailed(_blocked(attachment, "only http and https URLs are fetched"))
                item = await (self._download(attachment) if attachment.kind == "url" else _local(attachment))
                loaded.append(item)
                parts.append(None)
            inline = {id(item) for item in self._choose_inline(loaded)}
            fetched = iter([await self._part(item, id(item) in inline) for item in loaded])
            media = tuple(part if part is not None else next(fetched) for part in parts)
        finally:
            for item in loaded:
                if item.path is not None:
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
                data = item.data if item.data is not None else await asyncio.to_thread(_read, item)
                return MediaPart(item.mime_type, data=data)
            digest = await asyncio.to_thread(_digest, item)
        except OSError as exc:
            raise AttachmentFailed(_unreadable(item.attachment, exc)) from exc
        return await self._uploads.get(f"{item.mime_type}:{digest}", lambda: self._upload(item))

    async def _upload(self, item: _Loaded) -> MediaPart:
        name = os.path.basename(item.attachment.value.split("?")[0]) or "attachment"
        try:
            with await asyncio.to_thread(_source, item) as source:

                async def upload() -> UploadedMedia:
                    if not isinstance(source, str | bytes):
                        source.seek(0)  # a retry reads the file again from its start
                    return await self._client.upload_media(source, item.mime_type, name)

                uploaded = await call_with_retries(self._policy, upload)
        except OSError as exc:
            raise AttachmentFailed(_unreadable(item.attachment, exc)) from exc
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
                async with asyncio.timeout(self._timeout):
                    got = await call_with_retries(self._policy, lambda: self._downloader.get(attachment))
            except CallFailed as failure:
                error = RowError("ATTACHMENT_DOWNLOAD_FAILED", f"{attachment.describe()}: {failure.message}")
                raise AttachmentFailed(replace(error, code=failure.code)) from failure
            except TimeoutError as exc:
                message = f"{attachment.describe()}: not downloaded within {self._timeout:g} s (--timeout)"
                raise AttachmentFailed(RowError("ATTACHMENT_DOWNLOAD_FAILED", message)) from exc
        return _Loaded(attachment, got.mime_type, got.size, data=got.data, path=got.path)


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
    # The run's check found the file inside its folder; one removed since (or with a link put in its
    # way) fails only its own rows.
    assert attachment.root is not None
    try:
        size = await asyncio.to_thread(confined.size, attachment.root, attachment.value)
    except OSError as exc:
        raise AttachmentFailed(_unreadable(attachment, exc, "ATTACHMENT_NOT_FOUND")) from exc
    mime = attachment.mime_type or media_type(attachment.value) or "application/octet-stream"
    return _Loaded(attachment, mime, size)


def _read(item: _Loaded) -> bytes:
    if item.path is not None:
        with open(item.path, "rb") as handle:
            return handle.read()
    assert item.attachment.root is not None
    return confined.read(item.attachment.root, item.attachment.value)


def _digest(item: _Loaded) -> str:
    if item.data is not None:
        return hashlib.sha256(item.data).hexdigest()
    if item.path is not None:
        with open(item.path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    assert item.attachment.root is not None
    return confined.digest(item.attachment.root, item.attachment.value)


def _source(item: _Loaded) -> contextlib.AbstractContextManager[str | bytes | BinaryIO]:
    """What the upload reads: bytes, a temporary file's path, or a local file opened inside its folder."""
    if item.data is not None:
        return contextlib.nullcontext(item.data)
    if item.path is not None:
        return contextlib.nullcontext(item.path)
    assert item.attachment.root is not None
    return confined.open_file(item.attachment.root, item.attachment.value)


def _unreadable(attachment: Attachment, exc: OSError, status: str = "ATTACHMENT_UNREADABLE") -> RowError:
    if isinstance(exc, confined.OutsideRoot):
        return _blocked(attachment, exc.strerror or "outside the attachment folder")
    return RowError(status, f"{attachment.describe()}: {exc.strerror or exc}")


def _blocked(attachment: Attachment, reason: str) -> RowError:
    return RowError("ATTACHMENT_BLOCKED", f"{attachment.describe()}: {reason}")
