"""The fake Batch API: time-driven batch lifecycle, results computed at completion, Operation bodies."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gembulk.fake import content, wire
from gembulk.fake.files import FileStore, new_id, paginate, rfc3339

_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
# Per-request errors inside a batch carry gRPC numeric codes (3 = INVALID_ARGUMENT, 7 = PERMISSION_DENIED).
_INVALID = (3, "INVALID_ARGUMENT")
_DENIED = (7, "PERMISSION_DENIED")
# A [[fail:CODE]] row fails its one batch attempt with the gRPC form of that HTTP error.
_TRANSIENT = {
    429: (8, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (13, "INTERNAL", wire.TRANSIENT_MESSAGES[500]),
    502: (14, "UNAVAILABLE", "The service is currently unavailable."),
    503: (14, "UNAVAILABLE", wire.TRANSIENT_MESSAGES[503]),
    504: (4, "DEADLINE_EXCEEDED", wire.TRANSIENT_MESSAGES[504]),
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One request of a batch: its key/metadata and either a parsed prompt or why it cannot run."""

    key: str | None
    metadata: Any
    prompt: content.Prompt | None
    problem: str | None = None


@dataclass(slots=True)
class Batch:
    """A batch job; its state follows from the clock, except cancellation."""

    batch_id: str
    model: str
    display_name: str | None
    file_name: str | None  # input file for file batches, None for inline requests
    entries: list[Entry]
    created: float
    pending: float
    running: float
    final_state: str  # what it becomes after running: SUCCEEDED, FAILED or EXPIRED
    seed: int  # seeds the shuffle of the results file
    cancelled_at: float | None = None
    output: dict[str, Any] | None = None
    succeeded: int = 0
    failed: int = 0

    def state(self, now: float) -> str:
        if self.cancelled_at is not None:
            return "CANCELLED"
        if now < self.created + self.pending:
            return "PENDING"
        if now < self.created + self.pending + self.running:
            return "RUNNING"
        return self.final_state


def _entry_result(entry: Entry, model: str, files: FileStore) -> tuple[str, Any]:
    """("response", GenerateContentResponse) or ("error", google.rpc.Status-like dict) for one request."""
    if entry.prompt is not None:
        resolved = content.with_files(entry.prompt, files.lookup)
        if isinstance(resolved, str):
            return "error", {"code": _DENIED[0], "message": resolved, "status": _DENIED[1]}
        entry = dataclasses.replace(entry, prompt=resolved)
    if entry.prompt is None:
        code, status, message = *_INVALID, entry.problem or content.INVALID_ARGUMENT_MESSAGE
    elif entry.prompt.markers.invalid:
        code, status, message = *_INVALID, content.INVALID_ARGUMENT_MESSAGE
    elif entry.prompt.markers.denied:
        code, status, message = *_DENIED, "The caller does not have permission"
    elif entry.prompt.markers.fail_code:
        code, status, message = _TRANSIENT[entry.prompt.markers.fail_code]
    else:
        return "response", content.build_response(entry.prompt, model, content.response_id())
    return "error", {"code": code, "message": message, "status": status}


def _parse_entry(key: Any, metadata: Any, request: Any) -> Entry:
    try:
        return Entry(None if key is None else str(key), metadata, content.parse_request(request))
    except content.BadRequest as exc:
        return Entry(None if key is None else str(key), metadata, None, str(exc).strip())


def parse_jsonl(data: bytes) -> list[Entry]:
    """File-batch input lines {"key", "request"}; a malformed line becomes an entry that fails alone."""
    entries = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            entries.append(Entry(None, None, None, "Invalid JSON payload received. Unexpected token."))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("request"), dict):
            key = row.get("key") if isinstance(row, dict) else None
            entries.append(Entry(key, None, None, "Invalid JSON payload received. Missing 'request'."))
            continue
        entries.append(_parse_entry(row.get("key"), None, row["request"]))
    return entries


class BatchStore:
    """All batch jobs; results are computed the first time a finished job is looked at."""

    def __init__(self, files: FileStore, clock: Callable[[], float] = time.time) -> None:
        self.files = files
        self.clock = clock
        self.batches: dict[str, Batch] = {}
        self.created_count = 0

    def create(self, model: str, body: Any, pending: float, running: float, seed: int) -> web.Response:
        batch = body.get("batch", body) if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            return wire.error(400, "* BatchGenerateContentRequest.batch: batch is required\n")
        display = batch.get("displayName") or batch.get("display_name")
        config = batch.get("inputConfig") or batch.get("input_config") or {}
        file_name = config.get("fileName") or config.get("file_name") if isinstance(config, dict) else None
        if file_name:
            stored = self.files.get(str(file_name))
            if stored is None:
                return wire.file_missing(str(file_name).removeprefix("files/"))
            entries = parse_jsonl(stored.data)
        else:
            inline = config.get("requests") if isinstance(config, dict) else None
            items = inline.get("requests") if isinstance(inline, dict) else None
            if not isinstance(items, list) or not items:
                return wire.error(
                    400, "* BatchGenerateContentRequest.batch.input_config: input_config is required\n"
                )
            entries = []
            for item in items:
                item = item if isinstance(item, dict) else {}
                meta = item.get("metadata")
                key = meta.get("key") if isinstance(meta, dict) else None
                entries.append(_parse_entry(key, meta, item.get("request")))
        final = "SUCCEEDED"
        if display and "[[batch:fail]]" in display:
            final = "FAILED"
        elif display and "[[batch:expire]]" in display:
            final = "EXPIRED"
        job = Batch(
            new_id(36), model, display, file_name, entries, self.clock(), pending, running, final, seed
        )
        self.batches[job.batch_id] = job
        self.created_count += 1
        return wire.ok(self._operation(job, inline=True))

    def get(self, batch_id: str) -> web.Response:
        job = self.batches.get(batch_id)
        return wire.ok(self._operation(job, inline=True)) if job else _missing(batch_id)

    def list(self, request: web.Request) -> web.Response:
        page, token = paginate(list(reversed(self.batches.values())), request, default_size=10, max_size=1000)
        body: dict[str, Any] = {"operations": [self._operation(job, inline=False) for job in page]}
        if token:
            body["nextPageToken"] = token
        return wire.ok(body)

    def cancel(self, batch_id: str) -> web.Response:
        job = self.batches.get(batch_id)
        if job is None:
            return _missing(batch_id)
        if job.state(self.clock()) not in _TERMINAL:  # cancellation is instant-terminal, as on the real API
            job.cancelled_at = self.clock()
        return wire.ok({})

    def delete(self, batch_id: str) -> web.Response:
        return wire.ok({}) if self.batches.pop(batch_id, None) else _missing(batch_id)

    def _complete(self, job: Batch) -> None:
        results = [(entry, *_entry_result(entry, job.model, self.files)) for entry in job.entries]
        job.failed = sum(1 for _, kind, _ in results if kind == "error")
        job.succeeded = len(results) - job.failed
        if job.file_name is None:
            items = [{kind: value, "metadata": entry.metadata} for entry, kind, value in results]
            job.output = {"inlinedResponses": {"inlinedResponses": items}}
            return
        lines = []
        for entry, kind, value in results:
            row: dict[str, Any] = {kind: value}
            if entry.key is not None:
                row["key"] = entry.key  # key last, as in the real result files
            lines.append(wire.compact(row))
        # The real output order is arbitrary; shuffle (seeded) so clients must match on key.
        shuffled = lines[:]
        random.Random(f"{job.seed}:{job.batch_id}").shuffle(shuffled)
        if len(lines) > 1 and shuffled == lines:
            shuffled = shuffled[1:] + shuffled[:1]
        name = f"batch-{job.batch_id}"
        self.files.put(name, b"".join(shuffled), "application/jsonl", name)
        job.output = {"responsesFile": f"files/{name}"}

    def _operation(self, job: Batch, inline: bool) -> dict[str, Any]:
        now = self.clock()
        state = job.state(now)
        done = state in _TERMINAL
        if state == "SUCCEEDED" and job.output is None:
            self._complete(job)
        name = f"batches/{job.batch_id}"
        meta: dict[str, Any] = {"@type": _BATCH_TYPE, "model": f"models/{job.model}"}
        if job.display_name:
            meta["displayName"] = job.display_name
        if job.file_name:
            meta["inputConfig"] = {"fileName": job.file_name}
        output = job.output if state == "SUCCEEDED" else None
        if output and (inline or "responsesFile" in output):
            meta["output"] = output
        end = job.created + job.pending + job.running
        if state == "CANCELLED":
            end = job.cancelled_at or now
        meta["createTime"] = rfc3339(job.created, 9)
        if done:
            meta["endTime"] = rfc3339(end, 9)
        meta["updateTime"] = rfc3339(
            end if done else job.created + (job.pending if state == "RUNNING" else 0), 9
        )
        meta["batchStats"] = self._stats(job, state)
        meta["state"] = f"BATCH_STATE_{state}"
        meta["name"] = name
        operation: dict[str, Any] = {"name": name, "metadata": meta}
        if done:
            operation["done"] = True
        if state == "FAILED":
            operation["error"] = {
                "code": 13,
                "message": "Batch job failed: internal error.",
                "status": "INTERNAL",
            }
        elif output and "output" in meta:
            operation["response"] = {"@type": _OUTPUT_TYPE, **output}
        return operation

    @staticmethod
    def _stats(job: Batch, state: str) -> dict[str, str]:
        # int64 counts are strings and zero counts are omitted (proto3 JSON).
        stats = {"requestCount": str(len(job.entries))}
        if state in ("PENDING", "RUNNING"):
            stats["pendingRequestCount"] = str(len(job.entries))
        elif state == "SUCCEEDED":
            if job.succeeded:
                stats["successfulRequestCount"] = str(job.succeeded)
            if job.failed:
                stats["failedRequestCount"] = str(job.failed)
        elif state == "FAILED":
            stats["failedRequestCount"] = str(len(job.entries))
        return stats


def _missing(batch_id: str) -> web.Response:
    return wire.error(404, f"Requested entity was not found: batches/{batch_id}.")
