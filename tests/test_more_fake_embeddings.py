"""The fake's embeddings surface (embedContent, batchEmbedContents, embedding batch jobs): what the real
google-genai SDK gets back over HTTP, what it is refused and in which words, and the raw wire bodies."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from gembulk.fake import count_tokens, vector
from gembulk.fake.embeddings import MAX_BATCH
from tests.fake_support import Clients, RunningFake, running_fake

EMBED = "gemini-embedding-001"  # 3,072 values, Matryoshka
SMALL = "text-embedding-004"  # 768 values
RANGE = "output_dimensionality must be in the range [1, {size}]."


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake(batch_pending=0.05, batch_running=0.05, bad_keys=("bad-key",)) as server:
        yield server


@pytest.fixture
def clients(api: RunningFake) -> Iterator[Clients]:
    sdk = Clients(api.url)  # real google-genai clients, closed after the test
    yield sdk
    sdk.close()


def refused(call: Callable[[], object]) -> errors.APIError:
    with pytest.raises(errors.APIError) as raised:
        call()
    return raised.value


def post(api: RunningFake, path: str, body: Any, key: str | None = "k") -> tuple[int, dict[str, Any]]:
    """A raw POST, as a client other than the SDK sends it: (status, JSON body)."""
    url = f"{api.url}/v1beta/{path}" + (f"?key={key}" if key else "")
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


def text_request(text: str, **extra: Any) -> dict[str, Any]:
    return {"content": {"parts": [{"text": text}]}, **extra}


# -- through the SDK (it sends batchEmbedContents, one request per content) -------------------------


@pytest.mark.parametrize(("model", "size"), [(EMBED, 3072), (SMALL, 768)])
def test_each_model_answers_its_full_size_unit_vector(clients: Clients, model: str, size: int) -> None:
    answer = clients().models.embed_content(model=model, contents="the same words")
    (embedding,) = answer.embeddings or []
    values = embedding.values or []
    assert len(values) == size
    assert values == vector("the same words", size, size)
    assert sum(v * v for v in values) == pytest.approx(1.0, abs=1e-6)


def test_a_list_of_contents_gives_one_vector_each_in_order(clients: Clients) -> None:
    texts = ["alpha", "beta", "alpha"]
    config = types.EmbedContentConfig(output_dimensionality=16, task_type="RETRIEVAL_DOCUMENT")
    answer = clients().models.embed_content(model=EMBED, contents=texts, config=config)
    got = [e.values for e in answer.embeddings or []]
    assert got == [vector(text, 16, 3072) for text in texts]
    assert got[0] == got[2] and got[0] != got[1]


def test_a_truncated_vector_is_the_prefix_of_the_full_one(clients: Clients) -> None:
    client = clients()
    full = client.models.embed_content(model=EMBED, contents="prefix")
    short = client.models.embed_content(
        model=EMBED, contents="prefix", config=types.EmbedContentConfig(output_dimensionality=128)
    )
    assert (short.embeddings or [])[0].values == ((full.embeddings or [])[0].values or [])[:128]


@pytest.mark.parametrize(
    ("model", "dims", "size"), [(EMBED, 0, 3072), (EMBED, 3073, 3072), (SMALL, 769, 768)]
)
def test_a_size_out_of_range_is_refused_naming_the_request(
    clients: Clients, model: str, dims: int, size: int
) -> None:
    config = types.EmbedContentConfig(output_dimensionality=dims)
    error = refused(lambda: clients().models.embed_content(model=model, contents=["ok", "x"], config=config))
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    expected = f"* BatchEmbedContentsRequest.requests[0].output_dimensionality: {RANGE.format(size=size)}\n"
    assert error.message == expected


def test_more_than_a_hundred_contents_are_refused_and_a_hundred_are_not(clients: Clients) -> None:
    client = clients()
    texts = [f"t{i}" for i in range(MAX_BATCH)]
    config = types.EmbedContentConfig(output_dimensionality=2)
    assert (
        len(client.models.embed_content(model=EMBED, contents=texts, config=config).embeddings or []) == 100
    )
    error = refused(
        lambda: client.models.embed_content(model=EMBED, contents=[*texts, "one more"], config=config)
    )
    assert error.code == 400
    assert error.message == "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "no-such-model"])
def test_a_model_that_does_not_embed_is_404_naming_embed_content(clients: Clients, model: str) -> None:
    error = refused(lambda: clients().models.embed_content(model=model, contents="x"))
    assert (error.code, error.status) == (404, "NOT_FOUND")
    assert f"models/{model} is not found for API version" in (error.message or "")
    assert "or is not supported for embedContent. Call ListModels" in (error.message or "")


def test_a_bad_key_is_refused_before_the_model_is_looked_at(clients: Clients) -> None:
    error = refused(lambda: clients("bad-key").models.embed_content(model="no-such-model", contents="x"))
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in (error.message or "")


# -- the raw wire: embedContent (which the SDK does not use) and strict reading --------------------


def test_embed_content_answers_one_embedding_body(api: RunningFake) -> None:
    status, body = post(api, f"models/{EMBED}:embedContent", text_request("raw", outputDimensionality=3))
    assert status == 200
    assert body == {"embedding": {"values": vector("raw", 3, 3072)}}


def test_embed_content_joins_the_text_parts_and_reads_snake_case(api: RunningFake) -> None:
    parts = {
        "content": {
            "parts": [{"text": "ab"}, {"inline_data": {"mime_type": "a/b", "data": ""}}, {"text": "c"}]
        }
    }
    status, body = post(api, f"models/{SMALL}:embedContent", {**parts, "output_dimensionality": "4"})
    assert status == 200 and body["embedding"]["values"] == vector("abc", 4, 768)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "* EmbedContentRequest.content: content is not specified\n"),
        (text_request("x", outputDimensionality=5000), "* EmbedContentRequest.output_dimensionality: "),
        (
            text_request("x", colour="red"),
            'Invalid JSON payload received. Unknown name "colour": Cannot find field.',
        ),
        (b"{not json", "Invalid JSON payload received. Unexpected token."),
    ],
)
def test_embed_content_refusals(api: RunningFake, body: Any, message: str) -> None:
    status, answer = post(api, f"models/{EMBED}:embedContent", body)
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["message"].startswith(message)


def test_an_unknown_field_carries_a_bad_request_field_violation(api: RunningFake) -> None:
    body = {"requests": [text_request("x"), {"content": {"parts": [{"text": "y", "colour": 1}]}}]}
    status, answer = post(api, f"models/{EMBED}:batchEmbedContents", body)
    assert status == 400
    (detail,) = answer["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    (violation,) = detail["fieldViolations"]
    assert violation["field"] == "requests[1].content.parts[0]"
    assert violation["description"] == answer["error"]["message"]


@pytest.mark.parametrize("requests", [None, []])
def test_batch_embed_without_requests_is_refused(api: RunningFake, requests: Any) -> None:
    body = {} if requests is None else {"requests": requests}
    status, answer = post(api, f"models/{EMBED}:batchEmbedContents", body)
    assert status == 400
    assert answer["error"]["message"] == "* BatchEmbedContentsRequest.requests: requests is not specified\n"


def test_no_key_is_403_unregistered_caller(api: RunningFake) -> None:
    status, answer = post(api, f"models/{EMBED}:embedContent", text_request("x"), key=None)
    assert status == 403 and answer["error"]["status"] == "PERMISSION_DENIED"
    assert "unregistered callers" in answer["error"]["message"]


def test_lenient_mode_embeds_what_strict_mode_refuses() -> None:
    with running_fake(lenient=True) as lenient:
        status, body = post(lenient, f"models/{EMBED}:embedContent", text_request("x", colour="red"))
    assert status == 200 and body["embedding"]["values"] == vector("x", 3072, 3072)


# -- an embedding batch job from a file: one result line per input line, errors alone -------------


def wait_done(client: genai.Client, name: str) -> types.BatchJob:
    deadline = time.monotonic() + 20
    job = client.batches.get(name=name)
    while job.state is not None and not job.state.name.endswith(("SUCCEEDED", "FAILED")):
        assert time.monotonic() < deadline, job.state
        time.sleep(0.05)
        job = client.batches.get(name=name)
    return job


def test_an_embedding_job_answers_each_line_and_fails_bad_ones_alone(
    clients: Clients, tmp_path: Path
) -> None:
    client = clients(api_version="v1beta")
    lines = [
        {"key": "good", "request": text_request("hello there", outputDimensionality=4)},
        {"key": "too-wide", "request": text_request("x", outputDimensionality=99999)},
        {"key": "no-content", "request": {"outputDimensionality": 4}},
    ]
    source = tmp_path / "embed.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    uploaded = client.files.upload(file=str(source), config=types.UploadFileConfig(mime_type="jsonl"))
    with warnings.catch_warnings():  # "create_embeddings() is experimental"
        warnings.simplefilter("ignore")
        created = client.batches.create_embeddings(
            model=EMBED, src=types.EmbeddingsBatchJobSource(file_name=uploaded.name)
        )
    job = wait_done(client, created.name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest is not None and job.dest.file_name
    raw = client.files.download(file=job.dest.file_name)
    results = {row["key"]: row for row in map(json.loads, raw.decode().splitlines())}
    assert set(results) == {"good", "too-wide", "no-content"}
    good = results["good"]["response"]
    assert good == {
        "tokenCount": str(count_tokens("hello there")),
        "embedding": {"values": vector("hello there", 4, 3072)},
    }
    for key in ("too-wide", "no-content"):
        error = results[key]["error"]
        assert (error["code"], error["status"]) == (3, "INVALID_ARGUMENT") and "response" not in results[key]
    assert "output_dimensionality" in results["too-wide"]["error"]["message"]
