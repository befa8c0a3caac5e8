"""The canonical request: the one definition of "the same request", behind record fingerprints and cache keys.

A request is identified by its model, its GenerateContentRequest as a Batch API line carries it (contents
with the rendered prompt, systemInstruction, generationConfig with the response schema) and each
attachment's identity (a local file's content hash, a URL, a files/… name), and the content hash of the
shared context (`--context`, with the system instruction it carries) — never a cachedContents name: the
same document answers the same whether it was cached, recreated or sent inline. `canonical_request` is
the only place that says so: the response cache keys answers by its SHA-256 (`request_digest`), and every
record carries the first 16 hex digits of the same digest as its `fingerprint`, which resume compares.
Anything new that shapes a request is added there, and reaches both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from gembulk.records import FINGERPRINT_DIGITS

if TYPE_CHECKING:
    from gembulk.settings import GenerationSettings


def canonical_request(
    model: str, request: dict[str, Any], attachments: Sequence[str] = (), context: str | None = None
) -> dict[str, Any]:
    """What identifies a request: model, GenerateContentRequest (proto-JSON), attachment identities and
    the shared context's content hash."""
    keyed: dict[str, Any] = {"model": model.removeprefix("models/"), "request": request}
    if attachments:  # absent otherwise, so the keys of prompt-only requests stay as they were
        keyed["attachments"] = list(attachments)
    if context:  # likewise: without --context the keys are the same as before it existed
        keyed["context"] = context
    return keyed


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate (possible in JSON input) still hashes, as the same bytes every time.
    return text.encode("utf-8", "surrogatepass")


def request_digest(
    model: str, request: dict[str, Any], attachments: Sequence[str] = (), context: str | None = None
) -> str:
    """SHA-256 (hex) of the canonical request: the response cache's key."""
    canonical = canonical_request(model, request, attachments, context)
    return hashlib.sha256(_utf8(_canonical_json(canonical))).hexdigest()


def fingerprint_of(digest: str) -> str:
    """The fingerprint a record carries: the start of its request's digest."""
    return digest[:FINGERPRINT_DIGITS]


_SENTINEL = "\x00gembulk-prompt\x00"


class RequestDigests:
    """`request_digest` of every row of one job and model, without re-encoding what the rows share.

    The canonical JSON is encoded once around a placeholder prompt and its head hashed once; a row then
    costs one string encoding and the hash of its prompt and the tail. Requests with attachments (and
    the odd settings that contain the placeholder) take the plain path; tests check both agree.
    """

    def __init__(self, settings: GenerationSettings, model: str, context: str | None = None) -> None:
        self._settings = settings
        self._model = model
        self._context = context
        encoded = _canonical_json(canonical_request(model, _request_json(settings, _SENTINEL), (), context))
        pieces = encoded.split(encode_basestring(_SENTINEL))
        self._head: Any = None
        self._tail = b""
        if len(pieces) == 2:
            self._head = hashlib.sha256(_utf8(pieces[0]))
            self._tail = _utf8(pieces[1])

    def digest(self, prompt: str, attachments: Sequence[str] = ()) -> str:
        if attachments or self._head is None:
            request = _request_json(self._settings, prompt)
            return request_digest(self._model, request, attachments, self._context)
        hashed = self._head.copy()
        hashed.update(_utf8(encode_basestring(prompt)))
        hashed.update(self._tail)
        return hashed.hexdigest()


def _request_json(settings: GenerationSettings, prompt: str) -> dict[str, Any]:
    # Imported on use: the command line's help and usage errors never load google-genai.
    from gembulk.client.request import request_json

    return request_json(settings, prompt)
