"""URL attachments fetched under the address policy: every hop checked, redirects followed one at a time,
the body capped, and held in memory only up to the inline limit (a private temporary file beyond it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from dataclasses import dataclass

import aiohttp
from yarl import URL

from gembulk import urlguard
from gembulk.records import Attachment, AttachmentFailed, CallFailed, RowError

MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 1 << 16
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/unknown"})


@dataclass
class Downloaded:
    """A URL's body: in memory, or spooled to a temporary file (created 0600) that the caller deletes."""

    mime_type: str
    size: int
    data: bytes | None = None
    path: str | None = None


class Downloader:
    """GETs for URL attachments, through two sessions that never use ~/.netrc or keep cookies: direct
    connections go through the address policy's connector (urlguard); a URL the environment routes through
    an HTTP proxy goes to that proxy, after its host was resolved and checked here (the proxy connects, so
    the connector would only see the proxy, which the user configured and the row did not choose).
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        spool_above: int,
        allow_private: bool = False,
        scratch_dir: str | None = None,
        scratch_prefix: str = ".gembulk-media-",  # beside OUT: named so the next run removes leftovers
        connect_timeout: float = 30.0,
    ) -> None:
        self._max_bytes = max_bytes
        self._spool_above = spool_above
        self._allow_private = allow_private
        self._scratch_dir = scratch_dir
        self._scratch_prefix = scratch_prefix
        self._connect_timeout = connect_timeout
        self._direct: aiohttp.ClientSession | None = None
        self._proxied: aiohttp.ClientSession | None = None
        self._resolver: urlguard.PublicResolver | None = None

    async def __aenter__(self) -> Downloader:
        self._direct = self._session(urlguard.guarded_connector(allow_private=self._allow_private))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for session in (self._direct, self._proxied):
            if session is not None:
                await session.close()
        if self._resolver is not None:
            await self._resolver.close()

    def _session(self, connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # the environment's proxy is read by urlguard; its netrc passwords never
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
        )

    async def get(self, attachment: Attachment) -> Downloaded:
        """One attempt. Raises AttachmentFailed (blocked, too large, no type: final for the row) or
        CallFailed (an HTTP error or a dropped connection: the caller's retry policy decides)."""
        try:
            url = URL(attachment.value)
        except ValueError as exc:
            raise _blocked(attachment, f"not a valid URL ({exc})") from exc
        for hop in range(MAX_REDIRECTS + 1):
            proxy = urlguard.environment_proxy(url) if url.scheme in urlguard.URL_SCHEMES else None
            reason = await self._refusal(url, proxy)
            if reason is not None:
                raise _blocked(attachment, f"redirected to {url}: {reason}" if hop else reason)
            try:
                async with self._send(url, proxy) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECT_CODES and location:
                        url = _follow(attachment, url, location)
                        continue
                    if response.status != 200:
                        message = f"GET answered {response.status} {response.reason}"
                        raise CallFailed(f"HTTP_{response.status}", message, code=response.status)
                    return await self._receive(attachment, response)
            except (aiohttp.ClientError, OSError) as exc:
                blocked = urlguard.blocked_cause(exc)
                if blocked is not None:
                    raise _blocked(attachment, f"{blocked} (--allow-private-urls allows it)") from exc
                message = f"download failed: {type(exc).__name__}: {exc}"
                raise CallFailed("UNAVAILABLE", message, transport=True) from exc
        message = f"{attachment.describe()}: more than {MAX_REDIRECTS} redirects"
        raise AttachmentFailed(RowError("ATTACHMENT_DOWNLOAD_FAILED", message))

    async def _refusal(self, url: URL, proxy: urlguard.Proxy | None) -> str | None:
        reason = urlguard.refusal(url, allow_private=self._allow_private)
        if reason is not None or proxy is None or self._allow_private:
            return reason
        host = url.raw_host or ""
        if urlguard.literal_address(host) is not None:
            return None  # an IP literal: refusal has judged it
        if self._resolver is None:
            self._resolver = urlguard.PublicResolver()
        try:
            await self._resolver.resolve(host, url.port or 0, socket.AF_UNSPEC)
        except urlguard.BlockedAddress as exc:
            return f"{exc} (--allow-private-urls allows it)"
        except OSError:
            return (
                f"{host} does not resolve here, so its address cannot be checked before the proxy fetches it"
            )
        return None

    def _send(
        self, url: URL, proxy: urlguard.Proxy | None
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        if proxy is None:
            assert self._direct is not None, "use Downloader as an async context manager"
            return self._direct.get(url, allow_redirects=False)
        if self._proxied is None:
            self._proxied = self._session(aiohttp.TCPConnector())
        headers = proxy.headers or None
        return self._proxied.get(url, allow_redirects=False, proxy=proxy.url, proxy_headers=headers)

    async def _receive(self, attachment: Attachment, response: aiohttp.ClientResponse) -> Downloaded:
        """The body, stopped (and the connection dropped) as soon as it passes the cap."""
        mime = _answer_type(response.headers.get("Content-Type")) or attachment.mime_type
        if mime is None:
            message = f"{attachment.describe()}: the answer names no media type"
            raise AttachmentFailed(RowError("ATTACHMENT_UNKNOWN_TYPE", message))
        if response.content_length is not None and response.content_length > self._max_bytes:
            response.close()
            raise self._too_large(attachment)
        buffer = bytearray()
        handle = None
        path = None
        size = 0
        try:
            async for chunk in response.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > self._max_bytes:
                    response.close()
                    raise self._too_large(attachment)
                if handle is None and size > self._spool_above:
                    # Too big to inline: it will be uploaded from disk, so it need not sit in memory.
                    fd, path = tempfile.mkstemp(
                        prefix=self._scratch_prefix, suffix=".gembulk-tmp", dir=self._scratch_dir
                    )
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
            return Downloaded(mime, size, data=bytes(buffer))
        handle.close()
        return Downloaded(mime, size, path=path)

    def _too_large(self, attachment: Attachment) -> AttachmentFailed:
        message = f"{attachment.describe()}: larger than {self._max_bytes:,} bytes (--max-download)"
        return AttachmentFailed(RowError("ATTACHMENT_TOO_LARGE", message))


def _follow(attachment: Attachment, url: URL, location: str) -> URL:
    try:
        return url.join(URL(location))
    except ValueError as exc:
        raise _blocked(attachment, f"redirected to an invalid URL {location!r}") from exc


def _blocked(attachment: Attachment, reason: str) -> AttachmentFailed:
    return AttachmentFailed(RowError("ATTACHMENT_BLOCKED", f"{attachment.describe()}: {reason}"))


def _answer_type(header: str | None) -> str | None:
    if not header:
        return None
    mime = header.split(";", 1)[0].strip().lower()
    return None if not mime or mime in _GENERIC_TYPES else mime
