"""The fake Batch API (file and inline batches, lifecycle, cancel, list) through the real google-genai SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from gembulk.fake import expected_text
from tests.fake_support import Clients, RunningFake, running_fake

MODEL = "gemini-2.5-flash"
DONE = {
    types.JobState.JOB_STATE_SUCCEEDED,
    types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_CANCELLED,
    types.JobState.JOB_STATE_EXPIRED,
}


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake(batch_pending=0.15, batch_running=0.15, seed=3) as server:
        yield server


@pytest.fixture
def client(api: RunningFake) -> Iterator[genai.Client]:
    made = Clients(api.url)
    yield made(api_version="v1beta")
    made.close()


def wait_done(client: genai.Client, name: str) -> types.BatchJob:
    deadline = time.monotonic() + 10
    while True:
        job = client.batches.get(name=name)
        if job.state in DONE or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def request_line(key: str, text: str, snake: bool = False) -> str:
    contents = [{"role": "user", "parts": [{"text": text}]}]
    if snake:
        return json.dumps(
            {"key": key, "request": {"contents": contents, "generation_config": {"temperature": 0}}}
        )
    return json.dumps({"key": key, "request": {"contents": contents, "generationConfig": {"temperature": 0}}})


def test_file_batch_end_to_end(api: RunningFake, client: genai.Client, tmp_path: Path) -> None:
    keys = [f"row-{i}" for i in range(12)]
    lines = [request_line(k, f"prompt {k}", snake=i % 2 == 0) for i, k in enumerate(keys)]
    lines[3] = request_line(keys[3], "bad one [[invalid]]")
    lines.append("{not json")
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    src = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="jsonl"))
    job = client.batches.create(
        model=MODEL, src=src.name, config=types.CreateBatchJobConfig(display_name="file-job")
    )
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.name.startswith("batches/")
    assert (job.display_name, job.model) == ("file-job", f"models/{MODEL}")

    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.end_time is not None
    assert job.dest.file_name == f"files/batch-{job.name.removeprefix('batches/')}"
    rows = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    assert len(rows) == 13
    keyed = [r for r in rows if "key" in r]
    assert sorted(r["key"] for r in keyed) == sorted(keys)  # every key exactly once
    assert [r["key"] for r in keyed] != keys  # shuffled: clients must match on key
    assert all(list(r)[-1] == "key" for r in keyed)  # key comes last, as on the real service
    by_key = {r["key"]: r for r in keyed}
    assert by_key[keys[3]]["error"] == {
        "code": 3,
        "message": "Request contains an invalid argument.",
        "status": "INVALID_ARGUMENT",
    }
    answer = by_key["row-5"]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert answer == expected_text("prompt row-5")
    (malformed,) = [r for r in rows if "key" not in r]
    assert malformed["error"]["code"] == 3

    raw = httpx2.get(f"{api.url}/v1beta/{job.name}", headers={"x-goog-api-key": "k"}).json()
    assert raw["done"] is True
    assert raw["metadata"]["batchStats"] == {
        "requestCount": "13",
        "successfulRequestCount": "11",
        "failedRequestCount": "2",
    }
    assert raw["response"]["responsesFile"] == job.dest.file_name
    assert raw["metadata"]["inputConfig"] == {"fileName": src.name}


def test_pending_operation_on_the_wire(api: RunningFake, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(request_line("a", "x") + "\n")
    headers = {"x-goog-api-key": "k"}
    start = httpx2.post(
        f"{api.url}/upload/v1beta/files",
        headers={**headers, "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"},
        json={"file": {"mime_type": "jsonl"}},
    )
    final = httpx2.post(
        start.headers["x-goog-upload-url"],
        content=path.read_bytes(),
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
    )
    name = final.json()["file"]["name"]
    body = {"batch": {"display_name": "snake", "input_config": {"file_name": name}}}
    op = httpx2.post(
        f"{api.url}/v1beta/models/{MODEL}:batchGenerateContent", headers=headers, json=body
    ).json()
    assert "done" not in op
    meta = op["metadata"]
    assert meta["@type"] == "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
    assert meta["batchStats"] == {"requestCount": "1", "pendingRequestCount": "1"}
    assert meta["state"] == "BATCH_STATE_PENDING"
    assert meta["name"] == op["name"]
    assert meta["createTime"].endswith("Z")


def test_inline_batch(client: genai.Client) -> None:
    src = [
        {"contents": [{"role": "user", "parts": [{"text": "inline one"}]}], "metadata": {"key": "i1"}},
        {
            "contents": [{"role": "user", "parts": [{"text": "inline [[invalid]]"}]}],
            "metadata": {"key": "i2"},
        },
        {"contents": [{"role": "user", "parts": [{"text": "inline [[block]]"}]}], "metadata": {"key": "i3"}},
    ]
    job = client.batches.create(model=MODEL, src=src, config={"display_name": "inline-job"})
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    first, second, third = job.dest.inlined_responses
    assert first.metadata == {"key": "i1"}
    assert first.response.text == expected_text("inline one")
    assert second.response is None
    assert (second.error.code, second.error.message) == (3, "Request contains an invalid argument.")
    assert third.response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT


def test_cancel_is_instant(client: genai.Client) -> None:
    job = client.batches.create(model=MODEL, src=[{"contents": "x"}], config={"display_name": "to-cancel"})
    client.batches.cancel(name=job.name)
    cancelled = client.batches.get(name=job.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.done
    assert cancelled.dest is None


@pytest.mark.parametrize(
    ("marker", "state"),
    [
        ("[[batch:fail]]", types.JobState.JOB_STATE_FAILED),
        ("[[batch:expire]]", types.JobState.JOB_STATE_EXPIRED),
    ],
)
def test_failed_and_expired_batches(
    api: RunningFake, client: genai.Client, marker: str, state: object
) -> None:
    job = client.batches.create(
        model=MODEL, src=[{"contents": "x"}], config={"display_name": f"job {marker}"}
    )
    job = wait_done(client, job.name)
    assert job.state == state
    assert job.dest is None
    raw = httpx2.get(f"{api.url}/v1beta/{job.name}", headers={"x-goog-api-key": "k"}).json()
    assert raw["done"] is True
    if state == types.JobState.JOB_STATE_FAILED:
        assert set(raw["error"]) == {"code", "message", "status"}


def test_list_paginates_and_delete(api: RunningFake, client: genai.Client) -> None:
    before = api.stats()["batches_created"]
    names = {
        client.batches.create(
            model=MODEL, src=[{"contents": f"list {i}"}], config={"display_name": f"l{i}"}
        ).name
        for i in range(3)
    }
    assert api.stats()["batches_created"] == before + 3
    pager = client.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert names <= {job.name for job in pager}
    gone = names.pop()
    client.batches.delete(name=gone)
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name=gone)
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_missing_input_file(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model=MODEL, src="files/doesnotexist")
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")


def test_fail_markers_become_transient_error_lines(client: genai.Client, tmp_path: Path) -> None:
    lines = [
        request_line("a", "x [[fail:429:1]]"),
        request_line("b", "y [[fail:503]]"),
        request_line("c", "z"),
    ]
    path = tmp_path / "fail.jsonl"
    path.write_text("\n".join(lines) + "\n")
    src = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="jsonl"))
    job = wait_done(client, client.batches.create(model=MODEL, src=src.name).name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    rows = {r["key"]: r for r in map(json.loads, client.files.download(file=job.dest.file_name).splitlines())}
    assert (rows["a"]["error"]["code"], rows["a"]["error"]["status"]) == (8, "RESOURCE_EXHAUSTED")
    assert (rows["b"]["error"]["code"], rows["b"]["error"]["status"]) == (14, "UNAVAILABLE")
    assert "response" in rows["c"]


def test_api_error_rate_fails_files_and_batch_calls(api: RunningFake, client: genai.Client) -> None:
    api.configure(api_error_rate=1.0)
    try:
        with pytest.raises(errors.ServerError) as caught:
            client.batches.list()
        assert caught.value.code in (500, 503)
        with pytest.raises(errors.ServerError):
            client.files.list()
        assert api.stats()["api_faults"] >= 2
    finally:
        api.configure(api_error_rate=0.0)
    assert client.files.list(config={"page_size": 1}) is not None
