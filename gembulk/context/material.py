"""The shared context of a run (--context files, --context-text): read and checked before anything is sent."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from gembulk.attachments import media_type
from gembulk.errors import InputError
from gembulk.records import MediaPart, SharedPart

TEXT_SOURCE = "--context-text"
# What countTokens is not asked for (dry run without a key) is estimated: ~4 characters a token, and a
# medium at an image's count (gembulk.client.tokens says the same for row attachments).
_CHARS_PER_TOKEN = 4
_MEDIUM_TOKENS = 258


@dataclass(frozen=True)
class ContextItem:
    """One piece of the shared context: text (a text file, --context-text) or a medium (PDF, image, …)."""

    source: str  # the file as the command line named it, or --context-text
    sha256: str  # of the bytes (a text's UTF-8)
    size: int  # bytes
    text: str | None = None
    mime_type: str | None = None  # a medium's type, from its extension as for --attach
    path: str | None = None  # a medium's file (absolute, links resolved): read or uploaded when used
    data: bytes | None = None  # a small medium's bytes, read once here

    @property
    def is_text(self) -> bool:
        return self.text is not None

    def inline_part(self) -> SharedPart:
        """The part that carries this item in a request, its bytes inline (text as a text part)."""
        if self.text is not None:
            return SharedPart(text=self.text)
        assert self.mime_type is not None
        data = self.data
        if data is None:
            assert self.path is not None
            with open(self.path, "rb") as handle:
                data = handle.read()
        return SharedPart(media=MediaPart(self.mime_type, data=data))


@dataclass(frozen=True)
class SharedContext:
    """Everything sent before every row's own parts, in command-line order (files, then the text), and
    the system instruction that travels with it (into the cache, when there is one)."""

    items: tuple[ContextItem, ...]
    system: str | None
    sha256: str  # the content: system instruction and items, in order. Names caches, keys responses.

    @property
    def media_bytes(self) -> int:
        return sum(item.size for item in self.items if not item.is_text)

    def local_tokens(self) -> int:
        """A token estimate without the API: ~4 characters a token, an image's count per medium."""
        text = sum(len(item.text) for item in self.items if item.text is not None) + len(self.system or "")
        media = sum(1 for item in self.items if not item.is_text)
        return -(-text // _CHARS_PER_TOKEN) + media * _MEDIUM_TOKENS

    def describe(self) -> str:
        files = [item for item in self.items if item.source != TEXT_SOURCE]
        pieces = [f"{len(files)} file{'s' * (len(files) != 1)}"] if files else []
        if len(files) != len(self.items):
            pieces.append("--context-text")
        return " and ".join(pieces)


def load_context(
    files: Sequence[str], text: str | None, system: str | None, *, hold_below: int
) -> SharedContext:
    """Read the files named by --context (text as UTF-8, media by extension), then --context-text.

    A medium up to `hold_below` bytes is held in memory (it goes inline); a larger one is read when it is
    uploaded. Every problem is an InputError naming the file: nothing has been sent yet.
    """
    items = [_load_file(name, hold_below) for name in files]
    if text is not None:
        encoded = text.encode("utf-8", errors="surrogatepass")
        items.append(ContextItem(TEXT_SOURCE, hashlib.sha256(encoded).hexdigest(), len(encoded), text=text))
    return SharedContext(tuple(items), system, _digest(items, system))


def _load_file(name: str, hold_below: int) -> ContextItem:
    path = os.path.realpath(name)
    mime = media_type(name) or media_type(path)
    if not os.path.isfile(path):
        what = "not a regular file" if os.path.exists(path) else "no such file"
        raise InputError(f"--context {name}: {what}")
    if mime is None:
        raise InputError(
            f"--context {name}: cannot tell its media type from the extension",
            hint="name it .txt or .md for text, or .pdf, .png, … as --attach takes",
        )
    try:
        if _is_text(mime):
            data = _read(path)
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"--context {name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            if not text.strip():
                raise InputError(f"--context {name}: the file is empty")
            return ContextItem(name, hashlib.sha256(data).hexdigest(), len(data), text=text)
        size = os.path.getsize(path)
        if size == 0:
            raise InputError(f"--context {name}: the file is empty")
        held = _read(path) if size <= hold_below else None
        digest = hashlib.sha256(held).hexdigest() if held is not None else _file_digest(path)
        return ContextItem(name, digest, size, mime_type=mime, path=path, data=held)
    except OSError as exc:
        raise InputError(f"--context {name}: cannot read it ({exc.strerror or exc})") from None


def _is_text(mime: str) -> bool:
    # JSON, CSV, Markdown, code: the model reads them as text, and a text part is what its tokenizer and
    # implicit caching see best.
    return mime.startswith("text/") or mime == "application/json"


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _digest(items: Sequence[ContextItem], system: str | None) -> str:
    """Content only (never a path): the same document under another name is the same context."""
    hasher = hashlib.sha256(b"gembulk-context-1\n")
    hasher.update(f"system {len(system or '')}\n{system or ''}\n".encode("utf-8", errors="surrogatepass"))
    for item in items:
        kind = "text" if item.is_text else f"media {item.mime_type}"
        hasher.update(f"{kind} {item.sha256}\n".encode())
    return hasher.hexdigest()
