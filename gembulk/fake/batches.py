"""The fake Batch API: time-driven batch lifecycle, results computed at completion, Operation bodies.

Generation jobs (batchGenerateContent) and embedding jobs (asyncBatchEmbedContent) share the store,
the lifecycle and batches.get/list/cancel/delete, as on the real API.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gembulk.fake import answer, content, embeddings, wire
from gembulk.fake.batch_input import Entry, Reader
from gembulk.fake.caches import CacheStore
from gembulk.fake.files import FileStore, new_id, paginate, rfc3339
from gembulk.fake.generate import resolve
from gembulk.fake.models import ModelSpec
from gembulk.fake.wire import Refusal

_PACKAGE = "type.googleapis.com/google.ai.generativelanguage.v1main"
# The embedding job's type names follow the generation job's (…Batch / …BatchOutput); not seen verbatim.
_TYPES = {
    "generate": (f"{_PACKAGE}.GenerateContentBatch", f"{_PACKAGE}.GenerateContentBatchOutput"),
    "embed": (f"{_PACKAGE}.EmbedContentBatch", f"{_PACKAGE}.EmbedContentBatchOutput"),
}
_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
_DENIED = Refusal(403, "The caller does not have permission")
# A [[fail:CODE]] row fails its one batch attempt with the gRPC form of that HTTP error.
_TRANSIENT = {
    429: (8, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (13, "INTERNAL", wire.TRANSIENT_MESSAGES[500]),
    502: (14, "UNAVAILABLE", "The service is currently unavailable."),
    503: (14, "UNAVAILABLE", wire.TRANSIENT_MESSAGES[503]),
    504: (4, "DEADLINE_EXCEEDED", wire.TRANSIENT_MESSAGES[504]),
}


@dataclass(slots=True)
class Batch:
    """A batch job; its state follows from the clock, except cancellation."""

    batch_id: str
    kind: str  # "generate" | "embed"
    spec: ModelSpec
    strict: bool
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


class BatchStore:
    """All batch jobs; results are computed the first time a finished job is looked at."""

    def __init__(self, files: FileStore, caches: CacheStore, clock: Callable[[], float] = time.time) -> None:
        self.files = files
        self.caches = caches
        self.clock = clock
        self.batches: dict[str, Batch] = {}
        self.created_count = 0

    def create(self, reader: Reader, body: Any, pending: float, running: float, seed: int) -> web.Response:
        """POST models/{m}:batchGenerateContent or :asyncBatchEmbedContent, read by `reader`."""
        request = (
            "BatchGenerateContentRequest" if reader.kind == "generate" else "AsyncBatchEmbedContentRequest"
        )
        batch = body.get("batch", body) if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            return wire.error(400, f"* {request}.batch: batch is required\n")
        display = batch.get("displayName") or batch.get("display_name")
        config = batch.get("inputConfig") or batch.get("input_config") or {}
        file_name = config.get("fileName") or config.get("file_name") if isinstance(config, dict) else None
        if file_name:
            stored = self.files.get(str(file_name))
            if stored is None:
                return wire.file_missing(str(file_name).removeprefix("files/"))
            entries = reader.lines(stored.data)
        else:
            inline = config.get("requests") if isinstance(config, dict) else None
            items = inline.get("requests") if isinstance(inline, dict) else None
            if not isinstance(items, list) or not items:
                return wire.error(400, f"* {request}.batch.input_config: input_config is required\n")
            entries = reader.inline(items)
        final = "SUCCEEDED"
        if display and "[[batch:fail]]" in display:
            final = "FAILED"
        elif display and "[[batch:expire]]" in display:
            final = "EXPIRED"
        job = Batch(
            new_id(36),
            reader.kind,
            reader.spec,
            reader.strict,
            display,
            file_name,
            entries,
            self.clock(),
            pending,
            running,
            final,
            seed,
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
        results = [(entry, *self._result(job, entry)) for entry in job.entries]
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

    def _result(self, job: Batch, entry: Entry) -> tuple[str, Any]:
        """("response", the answer) or ("error", google.rpc.Status) for one request of a finished job."""
        if entry.problem is not None:
            return "error", entry.problem.batch_error()
        if job.kind == "embed":
            return embeddings.batch_result(entry.request, job.spec)
        prompt = entry.prompt
        assert prompt is not None and entry.request is not None
        prompt = resolve(prompt, entry.request, job.spec, self.files, self.caches, job.strict)
        if isinstance(prompt, Refusal):
            return "error", prompt.batch_error()
        marks = prompt.markers
        if marks.invalid:
            return "error", Refusal(400, content.INVALID_ARGUMENT_MESSAGE).batch_error()
        if marks.denied:
            return "error", _DENIED.batch_error()
        if marks.fail_code:
            code, status, message = _TRANSIENT[marks.fail_code]
            return "error", {"code": code, "message": message, "status": status}
        return "response", answer.build_response(prompt, job.spec.name, content.response_id())

    def _operation(self, job: Batch, inline: bool) -> dict[str, Any]:
        now = self.clock()
        state = job.state(now)
        done = state in _TERMINAL
        if state == "SUCCEEDED" and job.output is None:
            self._complete(job)
        name = f"batches/{job.batch_id}"
        batch_type, output_type = _TYPES[job.kind]
        meta: dict[str, Any] = {"@type": batch_type, "model": f"models/{job.spec.name}"}
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
            operation["response"] = {"@type": output_type, **output}
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
