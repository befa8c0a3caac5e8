"""Batch building blocks without a server: JSONL parts and splitting, the state file, result parsing."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gembulk.batch import state as batch_state
from gembulk.batch.build import LineEncoder, build_parts, request_line
from gembulk.batch.jobs import JobStatus, status_from_operation
from gembulk.batch.results import DUPLICATE, MISSING, NOT_SUBMITTED, from_line, index_results, row_error
from gembulk.batch.state import BatchState, JobIdentity, JobRef
from gembulk.client import GenerationSettings
from gembulk.errors import InputError, StateFileError, UsageError
from gembulk.executors.batch import _ResultCursor
from gembulk.observer import NullObserver
from gembulk.records import InputRow, PromptRequest

# -- building and splitting ----------------------------------------------------------------------------


def req(index: int, prompt: str = "hello", row_id: str | None = None) -> PromptRequest:
    row = InputRow(id=row_id or f"r{index}", fields={}, line=index + 1, index=index)
    return PromptRequest(row=row, prompt=prompt, model="gemini-2.5-flash")


async def stream(requests: list[PromptRequest]) -> AsyncIterator[PromptRequest]:
    for request in requests:
        yield request


def test_request_line_is_the_native_gemini_format_with_everything_inside_request() -> None:
    settings = GenerationSettings(
        system="be terse", temperature=0.2, max_output_tokens=50, json_schema={"type": "object"}
    )
    line = request_line(req(1, "Say {hi} é", row_id="a-1"), settings)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    value = json.loads(line)
    assert list(value) == ["key", "request"]  # not OpenAI's custom_id
    assert value["key"] == "a-1"
    assert value["request"] == {
        "contents": [{"role": "user", "parts": [{"text": "Say {hi} é"}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": "be terse"}]},
        "generationConfig": {
            "temperature": 0.2,
            "maxOutputTokens": 50,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
        },
    }
    assert "é".encode() in line  # UTF-8, not \\u escapes


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(),
        GenerationSettings(system='say "hi" \u2028 é', temperature=0.5, json_schema={"enum": ["\x00"]}),
    ],
)
def test_the_fast_line_encoder_writes_exactly_what_json_dumps_would(settings: GenerationSettings) -> None:
    encoder = LineEncoder(settings)
    for text in ("", "plain", 'quote " backslash \\ tab \t nl \n', "é ü 漢字 😀 \u2028 \x00 \x1f", "{x}"):
        request = req(1, text, row_id=text[::-1] or "k")
        assert encoder.line(request) == request_line(request, settings)
    with pytest.raises(InputError, match="not valid Unicode"):
        encoder.line(req(1, "bad \ud800"))


async def test_parts_split_by_row_count_and_keep_input_order(tmp_path: Path) -> None:
    requests = [req(i) for i in range(1, 11)]
    parts = await build_parts(
        stream(requests), GenerationSettings(), str(tmp_path), max_rows=4, max_bytes=10**9
    )
    assert [p.rows for p in parts] == [4, 4, 2]
    assert [(p.first_index, p.last_index) for p in parts] == [(1, 4), (5, 8), (9, 10)]
    keys = [json.loads(line)["key"] for p in parts for line in Path(p.path).read_text().splitlines()]
    assert keys == [f"r{i}" for i in range(1, 11)]
    assert all(p.bytes == os.path.getsize(p.path) for p in parts)


async def test_parts_split_by_bytes_before_the_limit_is_crossed(tmp_path: Path) -> None:
    requests = [req(i, "x" * 100) for i in range(1, 8)]
    size = len(request_line(requests[0], GenerationSettings()))
    parts = await build_parts(
        stream(requests), GenerationSettings(), str(tmp_path), max_rows=1000, max_bytes=3 * size
    )
    assert [p.rows for p in parts] == [3, 3, 1]
    assert all(p.bytes <= 3 * size for p in parts)


async def test_a_request_larger_than_the_byte_limit_is_refused_and_parts_are_removed(tmp_path: Path) -> None:
    requests = [req(1, "short"), req(2, "y" * 5000)]
    with pytest.raises(UsageError, match=r"row r2: its batch request is .* more than --batch-max-bytes"):
        await build_parts(stream(requests), GenerationSettings(), str(tmp_path), max_rows=10, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


async def test_nothing_to_send_builds_no_part(tmp_path: Path) -> None:
    assert await build_parts(stream([]), GenerationSettings(), str(tmp_path), max_rows=5, max_bytes=100) == []


# -- the state file ------------------------------------------------------------------------------------


def make_state(output: str, **changes: Any) -> BatchState:
    identity = JobIdentity("/in.csv", "{text}", "gemini-2.5-flash", None, "{}", "id")
    state = BatchState(
        output=output,
        output_format="jsonl",
        identity=identity,
        input_path="/in.csv",
        stdin_copy=None,
        input_format="csv",
        id_column="id",
        input_sha256="ab" * 32,
        rows=10,
        model="gemini-2.5-flash",
        template="{text}",
        generation={"system": None, "temperature": None, "max_output_tokens": None, "json_schema": None},
        online={"concurrency": 4, "max_attempts": 3, "max_retry_time": 60.0, "timeout": 30.0},
        jobs=(
            JobRef("files/a", 6, 1, 6, 600, "gembulk out part 1/2", "batches/one"),
            JobRef("files/b", 4, 7, 10, 400, "gembulk out part 2/2", None),
        ),
    )
    return replace(state, **changes)


def test_state_round_trips_and_lists_created_jobs(tmp_path: Path) -> None:
    out = str(tmp_path / "out.jsonl")
    path = batch_state.state_path(out)
    assert path == out + ".gembulk-batch.json"
    state = make_state(out)
    batch_state.save(path, state)
    loaded = batch_state.load(path)
    assert loaded == state
    assert loaded.job_names == ["batches/one"]
    assert json.loads(Path(path).read_text())["kind"] == "gembulk-batch-state"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl.gembulk-batch.json"]  # no temp file left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such batch state file"),
        ('{"kind": "gembulk-batch-state", "version": 1, "jobs": [', "corrupt batch state file"),
        ('{"some": "json"}', "not a gembulk batch state file"),
        ('{"kind": "gembulk-batch-state", "version": 99}', "version 99"),
        ('{"kind": "gembulk-batch-state", "version": 1}', "not a usable gembulk batch state file"),
    ],
)
def test_missing_corrupt_or_foreign_state_files_are_clear_errors(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "out.jsonl.gembulk-batch.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(StateFileError, match=message) as raised:
        batch_state.load(str(path))
    assert raised.value.exit_code == 2


def _hammer(path: str, output: str, worker: int) -> None:
    for i in range(150):
        batch_state.save(path, make_state(output, rows=worker * 1000 + i))


def test_concurrent_writers_never_leave_a_torn_state_file(tmp_path: Path) -> None:
    out = str(tmp_path / "out.jsonl")
    path = batch_state.state_path(out)
    batch_state.save(path, make_state(out))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(path, out, w)) for w in (1, 2, 3)]
    for worker in workers:
        worker.start()
    seen = 0
    while any(worker.is_alive() for worker in workers):
        batch_state.load(path)  # always a whole file, old or new
        seen += 1
    for worker in workers:
        worker.join()
    assert seen > 0
    assert batch_state.load(path).rows % 1000 == 149
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl.gembulk-batch.json"]


def test_targets_resolve_to_a_state_file_or_a_bare_job(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    path = batch_state.state_path(str(out))
    assert batch_state.resolve_target("batches/x", None) == (None, "batches/x")
    assert batch_state.resolve_target("batches/x", str(out)) == (None, "batches/x")  # no state file yet
    batch_state.save(path, make_state(str(out)))
    assert batch_state.resolve_target("batches/one", str(out)) == (path, "batches/one")
    with pytest.raises(StateFileError, match="does not list batches/other"):
        batch_state.resolve_target("batches/other", str(out))
    assert batch_state.resolve_target(path, None) == (path, None)
    assert batch_state.resolve_target(str(out), None) == (path, None)  # OUT names its state file
    out.write_text("")
    assert batch_state.resolve_target(str(out), None) == (path, None)


# -- results -------------------------------------------------------------------------------------------

ANSWER = {
    "usageMetadata": {"candidatesTokenCount": 3, "promptTokenCount": 2, "totalTokenCount": 9},
    "candidates": [{"content": {"role": "model", "parts": [{"text": "hi there"}]}, "finishReason": "STOP"}],
    "modelVersion": "gemini-2.5-flash",
    "someFieldFromTheFuture": {"x": 1},
}


def test_a_response_line_is_classified_like_an_online_answer() -> None:
    result = from_line({"response": ANSWER, "key": "a"}, parse_json=False)
    assert result.outcome.text == "hi there" and result.outcome.error is None
    assert result.outcome.usage is not None and result.outcome.usage.total_tokens == 9
    assert not result.retry_online
    blocked = from_line(
        {"response": {"promptFeedback": {"blockReason": "SAFETY"}}, "key": "b"}, parse_json=False
    )
    assert blocked.outcome.error is not None and blocked.outcome.error.status == "BLOCKED_SAFETY"
    assert not blocked.retry_online  # a content failure would fail online too
    parsed = from_line(
        {
            "response": {
                **ANSWER,
                "candidates": [{**ANSWER["candidates"][0], "content": {"parts": [{"text": '{"n": 1}'}]}}],
            }
        },
        parse_json=True,
    )
    assert parsed.outcome.parsed == {"n": 1}


@pytest.mark.parametrize(
    ("error", "status", "code", "online"),
    [
        ({"code": 3, "message": "bad", "status": "INVALID_ARGUMENT"}, "INVALID_ARGUMENT", 400, False),
        ({"code": 3, "message": "bad"}, "INVALID_ARGUMENT", 400, False),  # status from the gRPC code
        (
            {"code": 8, "message": "slow down", "status": "RESOURCE_EXHAUSTED"},
            "RESOURCE_EXHAUSTED",
            429,
            True,
        ),
        ({"code": 14, "message": "overloaded", "status": "UNAVAILABLE"}, "UNAVAILABLE", 503, True),
        ({"code": 13, "message": "oops"}, "INTERNAL", 500, True),
        ({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, "RESOURCE_EXHAUSTED", 429, True),
        ({"code": 7, "message": "no", "status": "PERMISSION_DENIED"}, "PERMISSION_DENIED", 403, False),
        # Its context cache was gone (the job outlived it): finished online, where it is recreated.
        (
            {
                "code": 7,
                "message": "CachedContent not found (or permission denied)",
                "status": "PERMISSION_DENIED",
            },
            "PERMISSION_DENIED",
            403,
            True,
        ),
    ],
)
def test_error_lines_keep_their_status_and_get_the_http_code(
    error: dict[str, Any], status: str, code: int, online: bool
) -> None:
    result = from_line({"error": error, "key": "k"}, parse_json=False)
    assert result.outcome.error is not None
    assert (result.outcome.error.status, result.outcome.error.code) == (status, code)
    assert result.outcome.error.message == error["message"]
    assert result.retry_online is online
    assert row_error(error) == result.outcome.error


def test_index_finds_lines_by_key_and_notes_duplicates_and_unkeyed_lines(tmp_path: Path) -> None:
    lines = [
        {"response": ANSWER, "key": "b"},
        {"error": {"code": 3, "message": "bad"}, "key": "a"},
        {"response": ANSWER, "key": "c"},
        {"response": ANSWER, "key": "c"},
        {"error": {"code": 3, "message": "unreadable line"}},
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{torn\n\n")
    index = index_results(str(path))
    assert sorted(index.offsets) == ["a", "b"]
    assert index.duplicates == {"c": 2}
    assert index.unkeyed == 2
    assert index.keys == 3


def test_status_is_read_from_the_raw_operation() -> None:
    running = status_from_operation(
        {
            "name": "batches/1",
            "metadata": {
                "state": "BATCH_STATE_RUNNING",
                "batchStats": {"requestCount": "10", "pendingRequestCount": "4"},
                "createTime": "2025-12-10T18:27:01.407650525Z",
                "model": "models/gemini-2.5-flash",
                "inputConfig": {"fileName": "files/in"},
            },
        }
    )
    assert (running.state, running.done, running.requests, running.pending) == ("RUNNING", False, 10, 4)
    assert running.counts() == "6/10 done" and running.model == "gemini-2.5-flash"
    assert running.input_file == "files/in" and running.age() is not None
    done = status_from_operation(
        {
            "name": "batches/2",
            "done": True,
            "metadata": {
                "state": "JOB_STATE_SUCCEEDED",
                "batchStats": {"requestCount": "3", "successfulRequestCount": "3"},
                "output": {"responsesFile": "files/batch-2"},
            },
            "response": {"responsesFile": "files/ignored"},
        }
    )
    assert (done.state, done.done, done.failed, done.results_file) == ("SUCCEEDED", True, 0, "files/batch-2")
    failed = status_from_operation(
        {
            "name": "batches/3",
            "metadata": {"state": "BATCH_STATE_FAILED"},
            "error": {"code": 13, "message": "x"},
        }
    )
    assert failed.done and failed.error == "x" and failed.results_file is None


class _LocalFiles:
    """Stands in for BatchService.download: 'downloads' local files (no SDK, no network)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    async def download(self, name: str, destination: str) -> None:
        shutil.copyfile(self.files[name], destination)


async def test_rows_are_matched_by_key_and_unanswered_rows_say_why(tmp_path: Path) -> None:
    results = tmp_path / "r1.jsonl"
    results.write_text(
        "\n".join(
            json.dumps(line)
            for line in (
                {"response": ANSWER, "key": "r3"},
                {"response": ANSWER, "key": "r1"},
                {"response": ANSWER, "key": "r2"},
                {"response": ANSWER, "key": "r2"},
            )
        )
        + "\n"
    )
    jobs = (
        JobRef("files/a", 4, 1, 4, 1, "p1", "batches/one"),
        JobRef("files/b", 2, 6, 7, 1, "p2", "batches/two"),
    )
    statuses = {
        "batches/one": JobStatus("batches/one", "SUCCEEDED", results_file="files/batch-one"),
        "batches/two": JobStatus("batches/two", "EXPIRED"),
    }
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    service: Any = _LocalFiles({"files/batch-one": results})
    cursor = _ResultCursor(jobs, statuses, service, str(scratch), NullObserver(), parse_json=False)
    got = {}
    for index in (1, 2, 3, 4, 5, 6):
        result = await cursor.result_for(req(index))
        error = result.outcome.error
        got[index] = (error.status if error else result.outcome.text, result.retry_online)
    cursor.close()
    assert got == {
        1: ("hi there", False),
        2: (DUPLICATE, True),
        3: ("hi there", False),
        4: (MISSING, True),
        5: (NOT_SUBMITTED, True),
        6: ("BATCH_EXPIRED", True),
    }
    assert list(scratch.iterdir()) == []  # the downloaded results are removed
