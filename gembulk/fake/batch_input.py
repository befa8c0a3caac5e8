"""The requests of a batch job: input file lines and inline requests, read as strictly as generateContent.

A request the real API would refuse becomes an error for that request alone (gRPC code 3
INVALID_ARGUMENT, the job still SUCCEEDED: python-genai#2693); the error carries the request's key
whenever the line has one, so a client can match it back. A line that is not JSON has no key to give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gembulk.fake import content, rules, validate
from gembulk.fake.models import ModelSpec
from gembulk.fake.wire import Refusal

NOT_JSON = Refusal(400, "Invalid JSON payload received. Unexpected token.")
NO_REQUEST = Refusal(400, "Invalid JSON payload received. Missing 'request'.")


@dataclass(frozen=True, slots=True)
class Entry:
    """One request of a batch: its key/metadata, the request and, for generation, its parsed prompt."""

    key: str | None
    metadata: Any
    request: dict[str, Any] | None
    prompt: content.Prompt | None = None
    problem: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Reader:
    """Reads the requests of one job: generation or embedding, strict or lenient, for one model."""

    kind: str  # "generate" | "embed"
    spec: ModelSpec
    version: str
    strict: bool

    def entry(self, key: Any, metadata: Any, request: Any) -> Entry:
        key = None if key is None else str(key)
        if not isinstance(request, dict):
            return Entry(key, metadata, None, problem=NO_REQUEST)
        message = "GenerateContentRequest" if self.kind == "generate" else "EmbedContentRequest"
        if self.strict and (refused := validate.check(message, request, self.version)):
            return Entry(key, metadata, request, problem=refused)
        if self.kind == "embed":
            return Entry(key, metadata, request)
        if self.strict and (refused := rules.check_generate(request, self.spec)):
            return Entry(key, metadata, request, problem=refused)
        try:
            return Entry(key, metadata, request, content.parse_request(request))
        except content.BadRequest as exc:
            return Entry(key, metadata, request, problem=Refusal(400, str(exc)))

    def lines(self, data: bytes) -> list[Entry]:
        """File-batch input lines {"key", "request"}; a malformed line becomes an entry that fails alone."""
        entries = []
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                entries.append(Entry(None, None, None, problem=NOT_JSON))
                continue
            if not isinstance(row, dict):
                entries.append(Entry(None, None, None, problem=NOT_JSON))
                continue
            entries.append(self.entry(row.get("key"), None, row.get("request")))
        return entries

    def inline(self, items: list[Any]) -> list[Entry]:
        """Inline requests {"request", "metadata": {"key"}}; the metadata comes back with each result."""
        entries = []
        for item in items:
            item = item if isinstance(item, dict) else {}
            meta = item.get("metadata")
            key = meta.get("key") if isinstance(meta, dict) else None
            entries.append(self.entry(key, meta, item.get("request")))
        return entries
