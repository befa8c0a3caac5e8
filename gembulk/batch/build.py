"""Building the batch input: requests streamed into JSONL part files, split by row count and byte size."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import IO

from gembulk.client import GenerationSettings, request_json
from gembulk.errors import InputError, UsageError
from gembulk.filemodes import open_private
from gembulk.records import PromptRequest

_WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class Part:
    """One JSONL file of the batch input, ready to upload as one job."""

    path: str
    rows: int
    bytes: int
    first_index: int  # data-row numbers of its first and last row (rows keep the input order)
    last_index: int
    model: str = ""  # the model its job runs on


def request_line(request: PromptRequest, settings: GenerationSettings) -> bytes:
    """One input line in the native Gemini format: {"key": row id, "request": GenerateContentRequest}.

    The key is the row id (ids are unique), so results are matched by key, never by position.
    """
    line = {"key": request.id, "request": request_json(settings, request.prompt, request.media)}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


_SENTINEL = "\x00gembulk-prompt\x00"


class LineEncoder:
    """request_line, byte for byte, without re-encoding the parts every row shares.

    The request JSON is encoded once around a placeholder prompt; each row then costs two string
    encodings (key and prompt) with the same encoder json.dumps uses. Falls back to request_line when
    the shared parts happen to contain the placeholder.
    """

    def __init__(self, settings: GenerationSettings) -> None:
        self._settings = settings
        encoded = json.dumps(request_json(settings, _SENTINEL), ensure_ascii=False, separators=(",", ":"))
        pieces = encoded.split(encode_basestring(_SENTINEL))
        self._pieces = (pieces[0], pieces[1]) if len(pieces) == 2 else None

    def line(self, request: PromptRequest) -> bytes:
        if self._pieces is None or request.media:
            return request_line(request, self._settings)
        head, tail = self._pieces
        key, prompt = encode_basestring(request.id), encode_basestring(request.prompt)
        text = f'{{"key":{key},"request":{head}{prompt}{tail}}}\n'
        try:
            return text.encode()
        except UnicodeEncodeError:
            raise InputError(
                f"row {request.id}: its prompt holds text that is not valid Unicode (a lone surrogate)"
            ) from None


class PartWriter:
    """Appends lines to part-0001.jsonl, part-0002.jsonl, … starting a new part before a limit is crossed.

    Only the open part's write buffer is held in memory, whatever the number of rows.
    """

    def __init__(
        self, directory: str, *, max_rows: int, max_bytes: int, model: str = "", prefix: str = "part"
    ) -> None:
        self.directory = directory
        self.model = model
        self.prefix = prefix
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.parts: list[Part] = []
        self._handle: IO[bytes] | None = None
        self._path = ""
        self._rows = 0
        self._bytes = 0
        self._first = 0
        self._last = 0

    def add(self, index: int, row_id: str, line: bytes) -> None:
        size = len(line)
        if size > self.max_bytes:
            raise UsageError(
                f"row {row_id}: its batch request is {size:,} bytes, more than --batch-max-bytes "
                f"{self.max_bytes:,}"
            )
        if self._handle is not None and (self._rows >= self.max_rows or self._bytes + size > self.max_bytes):
            self._close_part()
        if self._handle is None:
            self._path = os.path.join(self.directory, f"{self.prefix}-{len(self.parts) + 1:04d}.jsonl")
            self._handle = open_private(self._path, buffering=_WRITE_BUFFER)  # the rows' prompts: 0600
            self._rows = self._bytes = 0
            self._first = index
        self._handle.write(line)
        self._rows += 1
        self._bytes += size
        self._last = index

    def close(self) -> list[Part]:
        """Finish the open part; returns every part written."""
        if self._handle is not None:
            self._close_part()
        return self.parts

    def discard(self) -> None:
        """Close and delete every part file (the build failed or was interrupted)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.parts.append(self._part())
        for part in self.parts:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part.path)
        self.parts = []

    def _close_part(self) -> None:
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        self.parts.append(self._part())

    def _part(self) -> Part:
        return Part(self._path, self._rows, self._bytes, self._first, self._last, self.model)


async def build_parts(
    requests: AsyncIterator[PromptRequest],
    settings: GenerationSettings,
    directory: str,
    *,
    max_rows: int,
    max_bytes: int,
    stopping: Callable[[], bool] = lambda: False,
    settings_for: Callable[[str], GenerationSettings] | None = None,
) -> list[Part]:
    """Stream requests into JSONL parts in `directory`; memory stays flat. Empty list: nothing to send.

    `settings_for(model)`, when given, is each model's request (--context: its cache, or the shared parts).
    Any failure (or `stopping()` turning true) deletes the parts written so far.
    """
    # One writer per model: with -m fan-out every model gets its own jobs (a job has one model).
    writers: dict[str, PartWriter] = {}
    encoders: dict[str, LineEncoder] = {}
    try:
        async for request in requests:
            if stopping():
                for writer in writers.values():
                    writer.discard()
                return []
            writer = writers.get(request.model)
            if writer is None:
                prefix = f"part{len(writers) + 1}" if writers else "part"
                writer = writers[request.model] = PartWriter(
                    directory, max_rows=max_rows, max_bytes=max_bytes, model=request.model, prefix=prefix
                )
            encoder = encoders.get(request.model)
            if encoder is None:
                chosen = settings_for(request.model) if settings_for is not None else settings
                encoder = encoders[request.model] = LineEncoder(chosen)
            writer.add(request.row.index, request.id, encoder.line(request))
        return [part for writer in writers.values() for part in writer.close()]
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
