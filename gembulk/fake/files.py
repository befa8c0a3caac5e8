"""The fake Files API: an in-memory file store, resumable uploads, get/list/delete/download handlers.

A video stays PROCESSING for a while after its upload, as on the real API (a 64 MB mp4 needed about three
5-second polls: gemini-real-responses.md, 5f); other files are ACTIVE at once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gembulk.fake import wire

_ALNUM = string.ascii_lowercase + string.digits
_TTL = 48 * 3600.0  # uploaded files expire after 48 h on the real service
CHUNK_GRANULARITY = "8388608"


def new_id(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def rfc3339(ts: float, digits: int = 6) -> str:
    """UTC timestamp with a Z and `digits` fractional digits, as the real API prints them."""
    whole = datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ts - int(ts):.{digits}f}"[2:]
    return f"{whole}.{frac}Z"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file's metadata and bytes."""

    file_id: str
    data: bytes
    mime_type: str
    created: float
    display_name: str | None = None
    ready: float = 0.0  # when it turns ACTIVE

    def to_json(self, base: str, version: str, now: float) -> dict[str, Any]:
        digest = hashlib.sha256(self.data).hexdigest()
        body: dict[str, Any] = {"name": f"files/{self.file_id}"}
        if self.display_name:
            body["displayName"] = self.display_name
        body.update(
            mimeType=self.mime_type,
            sizeBytes=str(len(self.data)),
            createTime=rfc3339(self.created),
            updateTime=rfc3339(self.created),
            expirationTime=rfc3339(self.created + _TTL - 0.01, 9),
            # The real hash is base64 of the hex digest string, not of the raw digest bytes.
            sha256Hash=base64.b64encode(digest.encode()).decode(),
            uri=f"{base}{'/' + version if version else ''}/files/{self.file_id}",
            state="ACTIVE" if now >= self.ready else "PROCESSING",
            source="UPLOADED",
        )
        return body


@dataclass(slots=True)
class _Upload:
    file_id: str | None
    mime_type: str
    display_name: str | None
    data: bytearray = field(default_factory=bytearray)


def _pick(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


class FileStore:
    """Files by id (newest last) and the resumable uploads in progress."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, _Upload] = {}
        self.uploaded_count = 0
        self.uploaded_bytes = 0
        self.processing = 0.0  # seconds a video stays PROCESSING

    def put(self, file_id: str, data: bytes, mime_type: str, display_name: str | None = None) -> StoredFile:
        now = self.clock()
        ready = now + self.processing if mime_type.startswith("video/") else now
        stored = StoredFile(file_id, data, mime_type, now, display_name, ready)
        self.files[file_id] = stored
        return stored

    def active(self, file_id: str) -> bool:
        stored = self.get(file_id)
        return stored is None or self.clock() >= stored.ready

    def get(self, file_id: str) -> StoredFile | None:
        return self.files.get(file_id.removeprefix("files/"))

    def lookup(self, file_id: str) -> tuple[str, bytes] | None:
        """(mime type, bytes) of a stored file, for requests that reference it."""
        stored = self.get(file_id)
        return (stored.mime_type, stored.data) if stored is not None else None

    # -- HTTP handlers -----------------------------------------------------------------------------

    async def upload(self, request: web.Request, version: str, base: str) -> web.Response:
        """POST /upload/{v}/files: the resumable "start" or one chunk of an upload in progress."""
        upload_id = request.query.get("upload_id")
        command = request.headers.get("X-Goog-Upload-Command", "").replace(" ", "").lower().split(",")
        if upload_id is None:
            return await self._start(request, version, base, command)
        upload = self.uploads.get(upload_id)
        if upload is None:
            return wire.error(404, f"No upload session found for upload_id {upload_id}.")
        if "query" in command:
            return web.Response(headers=_status("active", X_Goog_Upload_Size_Received=str(len(upload.data))))
        chunk = await request.read()
        offset = request.headers.get("X-Goog-Upload-Offset")
        if offset is not None:
            if not offset.isdigit() or int(offset) > len(upload.data):
                return wire.error(
                    400, f"Invalid X-Goog-Upload-Offset {offset}: {len(upload.data)} bytes received."
                )
            del upload.data[int(offset) :]  # a re-sent chunk replaces what followed its offset
        upload.data += chunk
        if "finalize" not in command:
            return web.Response(headers=_status("active"))
        del self.uploads[upload_id]
        file_id = upload.file_id or new_id(12)
        stored = self.put(file_id, bytes(upload.data), upload.mime_type, upload.display_name)
        self.uploaded_count += 1
        self.uploaded_bytes += len(stored.data)
        body = wire.compact({"file": stored.to_json(base, version, self.clock())})
        return web.Response(body=body, headers=_status("final", Content_Type=wire.JSON_TYPE))

    async def _start(self, request: web.Request, version: str, base: str, command: list[str]) -> web.Response:
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable" or "start" not in command:
            return wire.error(
                400, "Only the resumable upload protocol is supported (X-Goog-Upload-Command: start)."
            )
        try:  # Google's curl examples send single-quoted JSON here, which wire.parse_json reads
            body = wire.parse_json(await request.read())
        except ValueError:
            return wire.invalid_json(b"")
        meta = body.get("file") if isinstance(body, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        file_id = None
        if meta.get("name"):
            file_id = str(meta["name"]).removeprefix("files/")
            if file_id in self.files:
                return wire.error(409, f"File files/{file_id} already exists.")
        mime = (
            _pick(meta, "mimeType", "mime_type")
            or request.headers.get("X-Goog-Upload-Header-Content-Type")
            or "application/octet-stream"
        )
        display = _pick(meta, "displayName", "display_name")
        upload_id = new_id(24)
        self.uploads[upload_id] = _Upload(file_id, mime, display)
        prefix = f"{base}/upload/{version + '/' if version else ''}files"
        url = f"{prefix}?upload_id={upload_id}&upload_protocol=resumable"
        headers = _status("active", X_Goog_Upload_URL=url, X_Goog_Upload_Chunk_Granularity=CHUNK_GRANULARITY)
        return web.Response(headers=headers)

    def get_json(self, file_id: str, version: str, base: str) -> web.Response:
        stored = self.get(file_id)
        return wire.ok(stored.to_json(base, version, self.clock())) if stored else wire.file_missing(file_id)

    def list_json(self, request: web.Request, version: str, base: str) -> web.Response:
        ordered = list(reversed(self.files.values()))  # newest first
        page, token = paginate(ordered, request, default_size=10, max_size=100)
        now = self.clock()
        body: dict[str, Any] = {"files": [f.to_json(base, version, now) for f in page]}
        if token:
            body["nextPageToken"] = token
        return wire.ok(body)

    def delete(self, file_id: str) -> web.Response:
        if self.files.pop(file_id, None) is None:
            return wire.file_missing(file_id)
        return wire.ok({})

    def download(self, file_id: str) -> web.Response:
        stored = self.get(file_id)
        if stored is None:
            return wire.file_missing(file_id)
        mime = stored.mime_type if "/" in stored.mime_type else "application/octet-stream"
        return web.Response(body=stored.data, headers={"Content-Type": mime})


def _status(state: str, **extra: str) -> dict[str, str]:
    headers = {"X-Goog-Upload-Status": state}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def paginate(
    items: list[Any], request: web.Request, default_size: int, max_size: int
) -> tuple[list[Any], str]:
    """One page of items and the next page token ("" on the last page); tokens are opaque offsets."""
    size_text = request.query.get("pageSize") or request.query.get("page_size") or ""
    size = min(int(size_text), max_size) if size_text.isdigit() and int(size_text) > 0 else default_size
    token = request.query.get("pageToken") or request.query.get("page_token") or ""
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o")) if token else 0
    except ValueError:
        start = 0
    end = start + size
    next_token = base64.urlsafe_b64encode(f"o{end}".encode()).decode() if end < len(items) else ""
    return items[start:end], next_token
