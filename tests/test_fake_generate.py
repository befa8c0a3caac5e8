"""generateContent, streamGenerateContent and countTokens of the fake, driven by the real google-genai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx2
import pydantic
import pytest
from google.genai import errors, types

from gembulk.fake import count_tokens, expected_text
from tests.fake_support import Clients, RunningFake, running_fake

MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake(models=("my-tuned-model",), bad_keys=("bad-key",)) as server:
        yield server


@pytest.fixture
def clients(api: RunningFake) -> Iterator[Clients]:
    clients = Clients(api.url)
    yield clients
    clients.close()


def check_usage(response: types.GenerateContentResponse, prompt: str, thinking: bool = True) -> None:
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == count_tokens(prompt)
    assert usage.candidates_token_count == count_tokens(expected_text(prompt))
    thoughts = count_tokens(prompt) % 7 + 2 if thinking else None
    assert usage.thoughts_token_count == thoughts
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count + (
        thoughts or 0
    )


def test_sync_generate_content(clients: Clients) -> None:
    prompt = "Summarise the plot of Hamlet in one line."
    response = clients().models.generate_content(model=MODEL, contents=prompt)
    assert response.text == expected_text(prompt)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == MODEL
    assert len(response.response_id or "") == 23
    check_usage(response, prompt)
    assert response.sdk_http_response.headers["content-type"] == "application/json; charset=UTF-8"


def test_models_without_thinking_omit_thoughts(clients: Clients) -> None:
    response = clients().models.generate_content(model="gemini-2.0-flash", contents="hi")
    check_usage(response, "hi", thinking=False)


def test_v1beta_system_instruction_and_extra_models(clients: Clients) -> None:
    client = clients(api_version="v1beta")
    config = types.GenerateContentConfig(system_instruction="Be terse.", temperature=0.1)
    response = client.models.generate_content(model="my-tuned-model", contents="question", config=config)
    assert response.text == expected_text("question")
    assert response.usage_metadata.prompt_token_count == count_tokens("Be terse.question")


async def test_async_generate_over_aiohttp(clients: Clients) -> None:
    client = clients()
    prompts = [f"async prompt {i}" for i in range(5)]
    responses = await asyncio.gather(
        *(client.aio.models.generate_content(model=MODEL, contents=p) for p in prompts)
    )
    assert [r.text for r in responses] == [expected_text(p) for p in prompts]
    check_usage(responses[0], prompts[0])
    counted = await client.aio.models.count_tokens(model=MODEL, contents="count me please")
    assert counted.total_tokens == count_tokens("count me please")
    await client.aio.aclose()


async def test_async_generate_over_httpx2(clients: Clients) -> None:
    async with httpx2.AsyncClient() as http:
        client = clients(httpx_async_client=http)
        response = await client.aio.models.generate_content(model=MODEL, contents="via httpx2")
        assert response.text == expected_text("via httpx2")
        with pytest.raises(errors.ClientError) as caught:
            await client.aio.models.generate_content(model=MODEL, contents="[[invalid]] via httpx2")
        assert caught.value.code == 400


def test_count_tokens(clients: Clients) -> None:
    prompt = "The quick brown fox jumps over the lazy dog."
    result = clients().models.count_tokens(model=MODEL, contents=prompt)
    assert result.total_tokens == count_tokens(prompt) == 11


def test_stream_sync(clients: Clients) -> None:
    prompt = "stream this answer please"
    chunks = list(clients().models.generate_content_stream(model=MODEL, contents=prompt))
    assert 2 <= len(chunks) <= 3
    assert "".join(c.text for c in chunks) == expected_text(prompt)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    check_usage(chunks[-1], prompt)


async def test_stream_async(clients: Clients) -> None:
    client = clients()
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="async stream")
    texts = [chunk.text async for chunk in stream]
    assert "".join(texts) == expected_text("async stream")
    await client.aio.aclose()


def test_stream_of_a_blocked_prompt_is_one_chunk(clients: Clients) -> None:
    chunks = list(clients().models.generate_content_stream(model=MODEL, contents="[[block]] s"))
    assert len(chunks) == 1
    assert chunks[0].prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT


class Recipe(pydantic.BaseModel):
    name: str
    servings: int
    vegan: bool
    steps: list[str]


def test_structured_output_with_a_pydantic_schema(clients: Clients) -> None:
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Recipe)
    response = clients().models.generate_content(model=MODEL, contents="soup", config=config)
    assert response.parsed == Recipe(name="name: soup", servings=4, vegan=True, steps=["steps: soup"])


def test_structured_output_with_a_json_schema(clients: Clients) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=Recipe.model_json_schema()
    )
    response = clients().models.generate_content(model=MODEL, contents="stew", config=config)
    assert Recipe.model_validate(response.parsed).servings == 4


def test_json_without_schema(clients: Clients) -> None:
    config = types.GenerateContentConfig(response_mime_type="application/json")
    response = clients().models.generate_content(model=MODEL, contents="free", config=config)
    assert json.loads(response.text) == {"answer": expected_text("free")}


@pytest.mark.parametrize(
    ("marker", "check"),
    [
        ("[[block]]", lambda r: r.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT),
        ("[[block:OTHER]]", lambda r: r.prompt_feedback.block_reason == types.BlockedReason.OTHER),
        ("[[empty]]", lambda r: r.candidates == []),
        ("[[safety]]", lambda r: r.candidates[0].finish_reason == types.FinishReason.SAFETY),
        ("[[recitation]]", lambda r: r.candidates[0].finish_reason == types.FinishReason.RECITATION),
        ("[[max_tokens]]", lambda r: r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS),
    ],
)
def test_markers_without_text(clients: Clients, marker: str, check: object) -> None:
    prompt = f"tell me something {marker}"
    response = clients().models.generate_content(model=MODEL, contents=prompt)
    assert response.text is None
    assert check(response)  # type: ignore[operator]
    usage = response.usage_metadata
    assert usage.prompt_token_count == count_tokens(prompt)
    assert usage.candidates_token_count is None
    if marker == "[[max_tokens]]":
        assert usage.thoughts_token_count == count_tokens(prompt) % 7 + 2
        assert usage.total_token_count == usage.prompt_token_count + usage.thoughts_token_count
    if marker == "[[safety]]":
        assert any(rating.blocked for rating in response.candidates[0].safety_ratings)
    if marker.startswith("[[block"):
        assert response.candidates is None


@pytest.mark.parametrize(
    ("prompt", "model", "code", "status", "message"),
    [
        ("[[invalid]]", MODEL, 400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        ("[[denied]]", MODEL, 403, "PERMISSION_DENIED", "The caller does not have permission"),
        ("hi", "gemini-denied-model", 403, "PERMISSION_DENIED", "The caller does not have permission"),
        (
            "hi",
            "gemini-9-ultra",
            404,
            "NOT_FOUND",
            "models/gemini-9-ultra is not found for API version v1, or is not supported for generateContent. "
            "Call ModelService.ListModels to see the list of available models and their supported methods.",
        ),
    ],
)
def test_permanent_errors(
    clients: Clients, prompt: str, model: str, code: int, status: str, message: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        clients().models.generate_content(model=model, contents=prompt)
    assert (caught.value.code, caught.value.status, caught.value.message) == (code, status, message)


def test_unknown_model_message_names_version_and_method(clients: Clients) -> None:
    with pytest.raises(errors.ClientError) as caught:
        clients(api_version="v1beta").models.count_tokens(model="nonexistent-model", contents="x")
    assert caught.value.message == (
        "models/nonexistent-model is not found for API version v1beta, or is not supported for countTokens. "
        "Call ListModels to see the list of available models and their supported methods."
    )


def test_bad_api_key(clients: Clients, api: RunningFake) -> None:
    with pytest.raises(errors.ClientError) as caught:
        clients(key="bad-key").models.generate_content(model=MODEL, contents="hi")
    error = caught.value
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert error.message == "API key not valid. Please pass a valid API key."
    info, localized = error.details["error"]["details"]
    assert info["reason"] == "API_KEY_INVALID"
    assert info["metadata"] == {"service": "generativelanguage.googleapis.com"}
    assert localized["@type"] == "type.googleapis.com/google.rpc.LocalizedMessage"
    assert "bad-key" in api.stats()["keys_seen"]


def test_missing_api_key_and_key_query_parameter(api: RunningFake) -> None:
    url = f"{api.url}/v1beta/models/{MODEL}:generateContent"
    body = {"contents": [{"parts": [{"text": "raw"}]}]}
    missing = httpx2.post(url, json=body)
    assert missing.status_code == 403
    assert missing.json()["error"] == {
        "code": 403,
        "message": "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
        "status": "PERMISSION_DENIED",
    }
    by_query = httpx2.post(url, json=body, params={"key": "query-key"})
    assert by_query.status_code == 200
    assert by_query.json()["candidates"][0]["content"]["parts"][0]["text"] == expected_text("raw")
    assert by_query.content.endswith(b"}\n")
