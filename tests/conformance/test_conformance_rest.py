"""Conformance, REST side: every endpoint of the fake called as Google's REST docs call it, and its faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from gembulk.fake import expected_text
from tests.conformance.rest_support import EMBED_MODEL, MODEL, Rest, error_of, text_body
from tests.fake_support import RunningFake, running_fake

UPLOAD_START = {"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake(
        batch_pending=0.1, batch_running=0.1, file_processing=0.2, bad_keys=("bad-key",)
    ) as server:
        yield server


@pytest.fixture
def rest(api: RunningFake) -> Rest:
    return Rest(api.url)


def upload(rest: Rest, data: bytes, mime: str, start_body: bytes | None = None) -> dict[str, Any]:
    headers = {**UPLOAD_START, "X-Goog-Upload-Header-Content-Type": mime}
    start = rest.post(
        "/upload/v1beta/files", start_body or b'{"file": {"display_name": "f"}}', headers=headers
    )
    assert start.status_code == 200, start.text
    url = start.headers["x-goog-upload-url"].removeprefix(rest.url)
    done = rest.post(
        url, data, headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
    )
    return done.json()["file"]


def wait_batch(rest: Rest, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        operation = rest.get(f"/v1beta/{name}").json()
        if operation.get("done") or time.monotonic() > deadline:
            return operation
        time.sleep(0.05)


def test_generate_stream_and_count(rest: Rest) -> None:
    # ai.google.dev/api/generate-content: the curl examples' bodies.
    body = {"contents": [{"parts": [{"text": "Explain how AI works in a few words"}]}]}
    answer = rest.generate(body).json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == expected_text(
        "Explain how AI works in a few words"
    )
    stream = rest.post(f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", body)
    assert stream.headers["content-type"] == "text/event-stream"
    chunks = [json.loads(line[6:]) for line in stream.text.split("\r\n\r\n") if line.startswith("data: ")]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    counted = rest.generate(body, verb="countTokens").json()
    wrapped = rest.generate(
        {"generateContentRequest": {"model": f"models/{MODEL}", **body}}, verb="countTokens"
    )
    assert counted == wrapped.json() and counted["totalTokens"] == 9


def test_generation_settings_shape_the_answer(rest: Rest) -> None:
    config = {"maxOutputTokens": 2, "candidateCount": 2}
    cut = rest.generate(text_body("hello there", generationConfig=config)).json()
    assert [c["finishReason"] for c in cut["candidates"]] == ["MAX_TOKENS", "MAX_TOKENS"]
    assert cut["candidates"][1] == {
        "content": {"parts": [{"text": "echo: he"}], "role": "model"},
        "finishReason": "MAX_TOKENS",
        "index": 1,
    }
    assert cut["usageMetadata"]["candidatesTokenCount"] == 4  # both candidates count
    stopped = rest.generate(text_body("a b c", generationConfig={"stopSequences": ["echo"]})).json()
    # A stop sequence that fires at once leaves an empty content (a live probe, 2026-08-27).
    assert stopped["candidates"] == [{"content": {}, "finishReason": "STOP", "index": 0}]
    assert "candidatesTokenCount" not in stopped["usageMetadata"]
    schema = {"type": "OBJECT", "properties": {"city": {"type": "STRING"}, "rank": {"type": "INTEGER"}}}
    config = {"responseMimeType": "application/json", "responseSchema": schema}
    value = json.loads(
        rest.generate(text_body("Paris", generationConfig=config)).json()["candidates"][0]["content"][
            "parts"
        ][0]["text"]
    )
    assert value == {"city": "city: Paris", "rank": 5}


def test_models_get_and_list(rest: Rest) -> None:
    model = rest.get(f"/v1beta/models/{MODEL}").json()
    assert list(model) == [
        "name",
        "version",
        "displayName",
        "description",
        "inputTokenLimit",
        "outputTokenLimit",
        "supportedGenerationMethods",
        "temperature",
        "topP",
        "topK",
        "maxTemperature",
        "thinking",
    ]
    assert (model["inputTokenLimit"], model["outputTokenLimit"]) == (1_048_576, 65_536)
    first = rest.get("/v1beta/models?pageSize=3").json()
    assert len(first["models"]) == 3
    second = rest.get(f"/v1beta/models?pageSize=100&pageToken={first['nextPageToken']}").json()
    names = [m["name"] for m in first["models"] + second["models"]]
    assert f"models/{EMBED_MODEL}" in names and "nextPageToken" not in second
    missing = rest.get("/v1beta/models/gemini-2.5-flash-001")
    assert (
        error_of(missing)["message"]
        == "Model is not found: models/gemini-2.5-flash-001 for api version v1beta"
    )


def test_files_with_the_documented_single_quoted_start(rest: Rest) -> None:
    # Google's curl examples start the upload with -d "{'file': {'display_name': '${DISPLAY_NAME}'}}".
    file = upload(rest, b"note", "text/plain", b"{'file': {'display_name': 'Notes'}}")
    assert (file["displayName"], file["state"]) == ("Notes", "ACTIVE")
    file_id = file["name"]
    assert rest.get(f"/v1beta/{file_id}").json()["sizeBytes"] == "4"
    assert file_id in [f["name"] for f in rest.get("/v1beta/files").json()["files"]]
    assert rest.get(f"/v1beta/{file_id}:download?alt=media").content == b"note"
    assert rest.request("DELETE", f"/v1beta/{file_id}").json() == {}


def test_a_video_is_processing_then_active(rest: Rest) -> None:
    file = upload(rest, b"\0" * 16, "video/mp4")
    assert file["state"] == "PROCESSING"
    deadline = time.monotonic() + 10  # wait for ACTIVE as a client must (tests/test_fake_stores.py: timing)
    while rest.get(f"/v1beta/{file['name']}").json()["state"] != "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.05)
    part = {"fileData": {"mimeType": "video/mp4", "fileUri": file["uri"]}}
    answer = rest.generate({"contents": [{"parts": [part, {"text": "describe"}]}]})
    assert "video/mp4 16 bytes" in answer.json()["candidates"][0]["content"]["parts"][0]["text"]


def test_cached_contents_lifecycle(rest: Rest) -> None:
    text = "Ledger entry. " * 400
    body = {
        "model": f"models/{MODEL}",
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "systemInstruction": {"parts": [{"text": "Use the ledger."}]},
        "ttl": "300s",
        "displayName": "ledger",
    }
    cache = rest.post("/v1beta/cachedContents", body).json()
    size = -(-len("Use the ledger." + text) // 4)
    assert cache["usageMetadata"] == {"totalTokenCount": size} and cache["displayName"] == "ledger"
    name = cache["name"]
    assert rest.get(f"/v1beta/{name}").json() == cache
    assert name in [c["name"] for c in rest.get("/v1beta/cachedContents").json()["cachedContents"]]
    patched = rest.request("PATCH", f"/v1beta/{name}?updateMask=ttl", {"ttl": "900s"}).json()
    assert patched["expireTime"] > cache["expireTime"]
    usage = rest.generate(text_body("total?", cachedContent=name)).json()["usageMetadata"]
    assert usage["cachedContentTokenCount"] == size and usage["promptTokenCount"] == size + 2
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": size}]
    assert rest.request("DELETE", f"/v1beta/{name}").json() == {}
    assert rest.get(f"/v1beta/{name}").status_code == 403


def test_embeddings(rest: Rest) -> None:
    # ai.google.dev/api/embeddings: the curl examples' bodies.
    single = {
        "model": f"models/{EMBED_MODEL}",
        "content": {"parts": [{"text": "What is the meaning of life?"}]},
    }
    one = rest.post(f"/v1beta/models/{EMBED_MODEL}:embedContent", single).json()
    assert len(one["embedding"]["values"]) == 3072
    requests = [single, {**single, "outputDimensionality": 256}]
    both = rest.post(f"/v1beta/models/{EMBED_MODEL}:batchEmbedContents", {"requests": requests}).json()
    assert both["embeddings"][0] == one["embedding"]
    assert both["embeddings"][1]["values"] == one["embedding"]["values"][:256]
    old = rest.post("/v1beta/models/text-embedding-004:embedContent", single).json()
    assert len(old["embedding"]["values"]) == 768


def test_generation_batches_inline_and_file_with_strict_lines(rest: Rest) -> None:
    big = {"model": f"models/{MODEL}", "contents": [{"parts": [{"text": "q" * 5000}]}]}
    cache = rest.post("/v1beta/cachedContents", big).json()["name"]
    inline = {"requests": {"requests": [{"request": text_body("one"), "metadata": {"key": "k1"}}]}}
    created = rest.post(
        f"/v1beta/models/{MODEL}:batchGenerateContent", {"batch": {"displayName": "d", "inputConfig": inline}}
    )
    done = wait_batch(rest, created.json()["name"])
    item = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"][0]
    assert item["metadata"] == {"key": "k1"} and item["response"]["candidates"][0]["finishReason"] == "STOP"
    lines = [
        {"key": "cached", "request": text_body("use it", cachedContent=cache)},
        {"key": "bad-role", "request": {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}},
        {"key": "no-request", "requests": text_body("misspelt")},
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode() + b"{not json\n"
    file = upload(rest, jsonl, "application/jsonl")
    batch = {"batch": {"displayName": "f", "inputConfig": {"fileName": file["name"]}}}
    done = wait_batch(rest, rest.post(f"/v1beta/models/{MODEL}:batchGenerateContent", batch).json()["name"])
    assert done["metadata"]["batchStats"] == {
        "requestCount": "4",
        "successfulRequestCount": "1",
        "failedRequestCount": "3",
    }
    out = rest.get(f"/download/v1beta/{done['response']['responsesFile']}:download?alt=media").text
    rows = [json.loads(line) for line in out.splitlines()]
    by_key = {row.get("key"): row for row in rows}
    assert by_key["cached"]["response"]["usageMetadata"]["cachedContentTokenCount"] == 1250
    assert by_key["bad-role"]["error"] == {
        "code": 3,
        "message": "Please use a valid role: user, model.",
        "status": "INVALID_ARGUMENT",
    }
    assert by_key["no-request"]["error"]["code"] == 3  # the key comes back even without a request
    assert by_key[None]["error"]["message"].startswith("Invalid JSON payload received.")


def test_batch_list_cancel_delete(rest: Rest) -> None:
    inline = {"requests": {"requests": [{"request": text_body("slow")}]}}
    with running_fake(batch_pending=30) as slow:
        api = Rest(slow.url)
        name = api.post(
            f"/v1beta/models/{MODEL}:batchGenerateContent", {"batch": {"inputConfig": inline}}
        ).json()["name"]
        assert name in [op["name"] for op in api.get("/v1beta/batches").json()["operations"]]
        assert api.post(f"/v1beta/{name}:cancel").json() == {}
        assert api.get(f"/v1beta/{name}").json()["metadata"]["state"] == "BATCH_STATE_CANCELLED"
        assert api.request("DELETE", f"/v1beta/{name}").json() == {}


def test_embedding_batch_job_from_a_file(rest: Rest) -> None:
    request = {"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 3}
    file = upload(
        rest, (json.dumps({"key": "request_1", "request": request}) + "\n").encode(), "application/jsonl"
    )
    batch = {"batch": {"displayName": "e", "inputConfig": {"file_name": file["name"]}}}
    created = rest.post(f"/v1beta/models/{EMBED_MODEL}:asyncBatchEmbedContent", batch).json()
    assert created["metadata"]["@type"].endswith(".EmbedContentBatch")
    done = wait_batch(rest, created["name"])
    line = rest.get(f"/download/v1beta/{done['response']['responsesFile']}:download?alt=media").text.strip()
    # 5e: '{"response":{"tokenCount":"1","embedding":{"values":[...]}},"key":"request_1"}', compact, key last.
    direct = rest.post(f"/v1beta/models/{EMBED_MODEL}:embedContent", request).json()["embedding"]
    assert line == json.dumps(
        {"response": {"tokenCount": "2", "embedding": direct}, "key": "request_1"}, separators=(",", ":")
    )


def test_inline_batches_over_20_mb_are_refused(rest: Rest) -> None:
    huge = text_body("x" * (21 * 1024 * 1024))
    batch = {"batch": {"inputConfig": {"requests": {"requests": [{"request": huge}]}}}}
    error = error_of(rest.post(f"/v1beta/models/{MODEL}:batchGenerateContent", batch))
    assert error["message"] == "Request payload size exceeds the limit: 20971520 bytes."


@pytest.mark.parametrize(
    ("marker", "code", "status", "message"),
    [
        (
            "[[fail:500]]",
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        ),  # 3b
        ("[[fail:503]]", 503, "UNAVAILABLE", "The model is overloaded. Please try again later."),  # 3a
        ("[[fail:504]]", 504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        ("[[invalid]]", 400, "INVALID_ARGUMENT", "Request contains an invalid argument."),  # 3e, js-genai#862
        ("[[denied]]", 403, "PERMISSION_DENIED", "The caller does not have permission"),  # 3g
    ],
)
def test_fault_markers(rest: Rest, marker: str, code: int, status: str, message: str) -> None:
    error = error_of(rest.generate(text_body(f"{marker} {time.monotonic_ns()}")))
    assert error == {"code": code, "message": message, "status": status}


def test_other_faults(rest: Rest) -> None:
    gateway = rest.generate(text_body(f"[[fail:502]] {time.monotonic_ns()}"))
    assert gateway.status_code == 502 and "<title>Error 502 (Server Error)!!1</title>" in gateway.text
    quota = error_of(rest.generate(text_body(f"[[fail:429]] {time.monotonic_ns()}")))  # 2a
    assert [d["@type"].rsplit(".", 1)[1] for d in quota["details"]] == ["Help", "QuotaFailure", "RetryInfo"]
    assert (
        error_of(Rest(rest.url, "bad-key").generate(text_body("x")))["details"][0]["reason"]
        == "API_KEY_INVALID"
    )  # 3c
    assert error_of(Rest(rest.url, "").generate(text_body("x")))["status"] == "PERMISSION_DENIED"  # 3g
    assert rest.post(f"/models/{MODEL}:generateContent", text_body("no version")).status_code == 404
    with pytest.raises(httpx2.RemoteProtocolError):  # [[drop]]: the connection closes with no answer
        rest.generate(text_body(f"[[drop]] {time.monotonic_ns()}"))


def test_quotas_are_per_project_that_is_per_key(api: RunningFake) -> None:
    api.configure(rpm=1, window=60.0)
    try:
        first, second = Rest(api.url, "project-a"), Rest(api.url, "project-b")
        assert first.generate(text_body("x")).status_code == 200
        refused = error_of(first.generate(text_body("x")))
        assert (
            refused["details"][1]["violations"][0]["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel"
        )
        assert second.generate(text_body("x")).status_code == 200  # another key, another project
    finally:
        api.configure(rpm=0, window=60.0)
        api.reset()
