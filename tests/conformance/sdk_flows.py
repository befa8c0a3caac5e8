"""Conformance flows: the google-genai SDK against a Gemini API endpoint (the fake, started by the caller).

Runnable on its own by any Python that has google-genai (it imports nothing from gembulk), so the same
flows can run under another SDK version: `python sdk_flows.py BASE_URL` runs every flow and prints one
JSON object {"sdk": version, "passed": [...], "failed": {flow: error}}; exit status 1 if a flow failed.
The fake should run with short batch phases and video processing (e.g. --batch-pending 0.1
--batch-running 0.1 --file-processing 0.3) so the flows take seconds.
"""

from __future__ import annotations

import io
import json
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from importlib import metadata

import pydantic
from google import genai
from google.genai import errors, types

MODEL = "gemini-2.5-flash"
EMBED_MODEL = "gemini-embedding-001"
KEY = "conformance-key"
LONG_TEXT = "The archive holds letters, ledgers and maps. " * 120  # > 1,024 tokens: cacheable on 2.5 Flash
# Fail markers count attempts per distinct request: a run-unique word keeps runs from sharing counters.
RUN = uuid.uuid4().hex[:8]
DONE = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")


def make_client(url: str) -> genai.Client:
    return genai.Client(
        api_key=KEY, vertexai=False, http_options=types.HttpOptions(base_url=url, api_version="v1beta")
    )


def refused(call: Callable[[], object]) -> errors.APIError:
    try:
        call()
    except errors.APIError as exc:
        return exc
    raise AssertionError("the call was not refused")


def tokens(text: str) -> int:
    return max(1, -(-len(text) // 4))  # the fake's tokenizer: 4 characters a token


# -- flows -----------------------------------------------------------------------------------------


def flow_generate(client: genai.Client) -> None:
    response = client.models.generate_content(model=MODEL, contents="hello")
    assert response.text == "echo: hello", response.text
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count == tokens("hello")
    assert (
        usage.total_token_count
        == usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )


def flow_stream_and_count(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="stream me please"))
    assert "".join(c.text or "" for c in chunks) == "echo: stream me please"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert client.models.count_tokens(model=MODEL, contents="count these words").total_tokens == tokens(
        "count these words"
    )


def flow_generation_settings(client: genai.Client) -> None:
    cut = client.models.generate_content(
        model=MODEL, contents="hello there friend", config=types.GenerateContentConfig(max_output_tokens=3)
    )
    assert cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert cut.text == "echo: hello ", cut.text
    assert cut.usage_metadata.candidates_token_count == 3
    stopped = client.models.generate_content(
        model=MODEL, contents="one two three", config=types.GenerateContentConfig(stop_sequences=["two"])
    )
    assert (stopped.text, stopped.candidates[0].finish_reason) == ("echo: one ", types.FinishReason.STOP)
    several = client.models.generate_content(
        model=MODEL, contents="pick", config=types.GenerateContentConfig(candidate_count=3)
    )
    assert [c.index for c in several.candidates] == [0, 1, 2]


class Recipe(pydantic.BaseModel):
    name: str
    servings: int


def flow_json_mode(client: genai.Client) -> None:
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Recipe)
    parsed = client.models.generate_content(model=MODEL, contents="soup", config=config).parsed
    assert parsed == Recipe(name="name: soup", servings=4), parsed
    plain = types.GenerateContentConfig(response_mime_type="application/json")
    assert json.loads(client.models.generate_content(model=MODEL, contents="x", config=plain).text) == {
        "answer": "echo: x"
    }


def flow_validation_errors(client: genai.Client) -> None:
    hot = refused(
        lambda: client.models.generate_content(
            model=MODEL, contents="x", config=types.GenerateContentConfig(temperature=5)
        )
    )
    assert (hot.code, hot.status) == (400, "INVALID_ARGUMENT")
    assert hot.message == (
        "* GenerateContentRequest.generation_config.temperature: "
        "temperature must be in the range [0.0, 2.0].\n"
    )
    bot = types.Content(role="bot", parts=[types.Part(text="x")])
    assert refused(lambda: client.models.generate_content(model=MODEL, contents=[bot])).message == (
        "Please use a valid role: user, model."
    )
    penalty = types.GenerateContentConfig(presence_penalty=0.5)
    assert refused(
        lambda: client.models.generate_content(model=MODEL, contents="x", config=penalty)
    ).message == (f"Penalty is not enabled for models/{MODEL}")
    missing = refused(lambda: client.models.generate_content(model="gemini-0-nope", contents="x"))
    assert (missing.code, missing.status) == (404, "NOT_FOUND")


def flow_faults(client: genai.Client) -> None:
    once = f"[[fail:503:1]] once {RUN}"
    busy = refused(lambda: client.models.generate_content(model=MODEL, contents=once))
    assert (busy.code, busy.status) == (503, "UNAVAILABLE")
    assert client.models.generate_content(model=MODEL, contents=once).text  # the second try succeeds
    limited = refused(lambda: client.models.generate_content(model=MODEL, contents=f"[[fail:429:1]] {RUN}"))
    kinds = [d["@type"].rsplit(".", 1)[1] for d in limited.details["error"]["details"]]
    assert limited.code == 429 and kinds == ["Help", "QuotaFailure", "RetryInfo"]
    blocked = client.models.generate_content(model=MODEL, contents="[[block]] q")
    assert (
        blocked.text is None
        and blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    )


def flow_models(client: genai.Client) -> None:
    model = client.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}" and model.input_token_limit == 1_048_576
    assert model.output_token_limit == 65_536 and "generateContent" in model.supported_actions
    names = {m.name for m in client.models.list(config={"page_size": 5})}
    assert {f"models/{MODEL}", f"models/{EMBED_MODEL}"} <= names
    assert refused(lambda: client.models.get(model="gemini-0-nope")).code == 404


def flow_caches(client: genai.Client) -> None:
    config = types.CreateCachedContentConfig(
        contents=[LONG_TEXT], system_instruction="Answer from the archive.", ttl="300s"
    )
    cache = client.caches.create(model=MODEL, config=config)
    size = tokens("Answer from the archive." + LONG_TEXT)
    assert cache.name.startswith("cachedContents/") and cache.usage_metadata.total_token_count == size
    assert client.caches.get(name=cache.name).model == f"models/{MODEL}"
    assert cache.name in {c.name for c in client.caches.list()}
    later = client.caches.update(name=cache.name, config=types.UpdateCachedContentConfig(ttl="600s"))
    assert later.expire_time > cache.expire_time
    use = types.GenerateContentConfig(cached_content=cache.name)
    answer = client.models.generate_content(model=MODEL, contents="which maps?", config=use)
    assert answer.usage_metadata.cached_content_token_count == size
    assert answer.usage_metadata.prompt_token_count == size + tokens("which maps?")
    small = types.CreateCachedContentConfig(contents=["too short"])
    assert refused(lambda: client.caches.create(model=MODEL, config=small)).message == (
        "Cached content is too small. total_token_count=3, min_total_token_count=1024"
    )
    client.caches.delete(name=cache.name)
    gone = refused(lambda: client.models.generate_content(model=MODEL, contents="x", config=use))
    assert (gone.code, gone.message) == (403, "CachedContent not found (or permission denied)")


def flow_embeddings(client: genai.Client) -> None:
    one = client.models.embed_content(model=EMBED_MODEL, contents="same text")
    assert len(one.embeddings[0].values) == 3072
    again = client.models.embed_content(
        model=EMBED_MODEL,
        contents=["same text", "other"],
        config=types.EmbedContentConfig(output_dimensionality=8),
    )
    assert again.embeddings[0].values == one.embeddings[0].values[:8]
    assert again.embeddings[1].values != again.embeddings[0].values
    assert refused(lambda: client.models.embed_content(model=MODEL, contents="x")).code == 404


def flow_files(client: genai.Client) -> None:
    text = client.files.upload(
        file=io.BytesIO(b"plain notes"), config=types.UploadFileConfig(mime_type="text/plain")
    )
    assert text.state == types.FileState.ACTIVE and text.size_bytes == 11
    video = client.files.upload(
        file=io.BytesIO(b"\0" * 64), config=types.UploadFileConfig(mime_type="video/mp4")
    )
    assert video.state == types.FileState.PROCESSING
    part = types.Part(file_data=types.FileData(file_uri=video.uri, mime_type="video/mp4"))
    early = refused(lambda: client.models.generate_content(model=MODEL, contents=[part, "describe"]))
    assert (early.code, early.status) == (400, "FAILED_PRECONDITION")
    deadline = time.monotonic() + 10
    while client.files.get(name=video.name).state != types.FileState.ACTIVE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (
        "video/mp4 64 bytes" in client.models.generate_content(model=MODEL, contents=[part, "describe"]).text
    )
    assert client.files.download(file=text.name) == b"plain notes"
    client.files.delete(name=text.name)


def wait(client: genai.Client, name: str) -> types.BatchJob:
    deadline = time.monotonic() + 20
    job = client.batches.get(name=name)
    while job.state.name not in DONE and time.monotonic() < deadline:
        time.sleep(0.1)
        job = client.batches.get(name=name)
    return job


def flow_batches(client: genai.Client) -> None:
    inline = [
        {"contents": [{"parts": [{"text": "first"}], "role": "user"}], "metadata": {"key": "a"}},
        {"contents": [{"parts": [{"text": "second"}], "role": "user"}], "metadata": {"key": "b"}},
    ]
    job = wait(client, client.batches.create(model=MODEL, src=inline).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    answers = {r.metadata["key"]: r.response.text for r in job.dest.inlined_responses}
    assert answers == {"a": "echo: first", "b": "echo: second"}
    lines = [
        {"key": "good", "request": {"contents": [{"parts": [{"text": "fine"}]}]}},
        {"key": "unknown-field", "request": {"contents": [{"parts": [{"text": "x"}]}], "foo": 1}},
        {"key": "no-request"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    src = client.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(mime_type="jsonl"))
    job = wait(client, client.batches.create(model=MODEL, src=src.name).name)
    rows = {
        row["key"]: row
        for row in map(json.loads, client.files.download(file=job.dest.file_name).splitlines())
    }
    assert rows["good"]["response"]["candidates"][0]["content"]["parts"][0]["text"] == "echo: fine"
    assert rows["unknown-field"]["error"]["code"] == 3
    assert (
        rows["unknown-field"]["error"]["message"]
        == 'Invalid JSON payload received. Unknown name "foo": Cannot find field.'
    )
    assert rows["no-request"]["error"]["status"] == "INVALID_ARGUMENT"


def flow_batch_embeddings(client: genai.Client) -> None:
    source = types.EmbeddingsBatchJobSource(
        inlined_requests=types.EmbedContentBatch(
            contents=["alpha", "beta"], config=types.EmbedContentConfig(output_dimensionality=4)
        )
    )
    with warnings.catch_warnings():  # "batches.create_embeddings() is experimental"
        warnings.simplefilter("ignore")
        created = client.batches.create_embeddings(model=EMBED_MODEL, src=source)
    job = wait(client, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    vectors = [r.response.embedding.values for r in job.dest.inlined_embed_content_responses]
    direct = client.models.embed_content(
        model=EMBED_MODEL,
        contents=["alpha", "beta"],
        config=types.EmbedContentConfig(output_dimensionality=4),
    )
    assert vectors == [e.values for e in direct.embeddings]


FLOWS: dict[str, Callable[[genai.Client], None]] = {
    name.removeprefix("flow_"): value for name, value in dict(globals()).items() if name.startswith("flow_")
}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    client = make_client(argv[1])
    passed, failed = [], {}
    for name, flow in FLOWS.items():
        try:
            flow(client)
        except Exception:  # report every flow, not only the first failure
            failed[name] = traceback.format_exc(limit=3)
        else:
            passed.append(name)
    client.close()
    print(json.dumps({"sdk": metadata.version("google-genai"), "passed": passed, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
