"""The client module over the real SDK and real HTTP: outcome classification and error translation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gembulk.client import GeminiClient, environment_routes_requests, parse_duration
from gembulk.client.request import generate_config
from gembulk.client.sdk_patches import shared_tls_options
from gembulk.fake import expected_text
from gembulk.records import CallFailed
from gembulk.settings import GenerationSettings
from tests.fake_support import RunningFake, running_fake

KEY = "client-test-key"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningFake]:
    with running_fake(window=1.0, bad_keys=("bad",)) as fake:
        yield fake


@pytest.fixture
def api(server: RunningFake) -> RunningFake:
    server.configure(latency=0.0, rpm=0, rpd=0, tpm=0, error_rate=0.0)
    server.reset()
    return server


def client(
    url: str, *, key: str = KEY, timeout: float | None = 10.0, concurrency: int = 8, **settings
) -> GeminiClient:
    return GeminiClient(
        api_key=key,
        base_url=url,
        max_connections=concurrency,
        timeout=timeout,
        settings=GenerationSettings(**settings),
    )


async def generate(api: RunningFake, prompt: str, model: str = "gemini-2.5-flash", **kwargs):
    async with client(api.url, **kwargs) as c:
        return await c.generate(model, prompt)


async def test_success_carries_text_usage_and_finish_reason(api: RunningFake) -> None:
    outcome = await generate(api, "hello there")
    assert outcome.ok and outcome.text == expected_text("hello there")
    assert outcome.finish_reason == "STOP"
    assert outcome.usage is not None
    assert outcome.usage.total_tokens == (
        outcome.usage.prompt_tokens + outcome.usage.output_tokens + outcome.usage.thoughts_tokens
    )
    assert outcome.model_version == "gemini-2.5-flash"


@pytest.mark.parametrize(
    ("marker", "status", "finish"),
    [
        ("[[block]]", "BLOCKED_PROHIBITED_CONTENT", None),
        ("[[block:OTHER]]", "BLOCKED_OTHER", None),
        ("[[safety]]", "SAFETY", "SAFETY"),
        ("[[recitation]]", "RECITATION", "RECITATION"),
        ("[[max_tokens]]", "MAX_TOKENS", "MAX_TOKENS"),
        ("[[empty]]", "EMPTY_RESPONSE", None),
    ],
)
async def test_answers_without_text_are_row_failures(
    api: RunningFake, marker: str, status: str, finish: str
) -> None:
    outcome = await generate(api, f"x {marker}")
    assert not outcome.ok and outcome.text is None
    assert outcome.error is not None and outcome.error.status == status and outcome.error.code is None
    assert outcome.finish_reason == finish


async def test_system_instruction_and_schema_reach_the_wire(api: RunningFake) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    outcome = await generate(api, "count", system="be brief", json_schema=schema, temperature=0.1)
    assert outcome.ok and isinstance(outcome.parsed, dict) and isinstance(outcome.parsed["n"], int)
    # the fake counts the system instruction in the prompt tokens, so it was sent
    plain = await generate(api, "count")
    assert outcome.usage.prompt_tokens > plain.usage.prompt_tokens


@pytest.mark.timing
async def test_429_carries_retry_delay_and_announced_quota(api: RunningFake) -> None:
    api.configure(rpm=1)
    async with client(api.url) as c:
        await c.generate("gemini-2.5-flash", "first")
        with pytest.raises(CallFailed) as caught:
            await c.generate("gemini-2.5-flash", "second")
    failure = caught.value
    assert failure.code == 429 and failure.status == "RESOURCE_EXHAUSTED"
    assert failure.retry_delay is not None and 0 < failure.retry_delay <= 1.0
    (violation,) = failure.violations
    assert violation.per_minute and not violation.per_day
    assert violation.limit == 60  # 1 per 1-second window, announced per minute


@pytest.mark.timing
async def test_token_quota_429_names_the_input_token_metric(api: RunningFake) -> None:
    api.configure(tpm=10)  # 10 prompt tokens per 1-second window
    async with client(api.url) as c:
        await c.generate("gemini-2.5-flash", "x" * 32)
        with pytest.raises(CallFailed) as caught:
            await c.generate("gemini-2.5-flash", "y" * 32)
    (violation,) = caught.value.violations
    assert violation.tokens and violation.per_minute and not violation.per_day
    assert violation.metric.endswith("input_token_count")
    assert violation.limit == 600  # announced per minute


async def test_per_day_quota_is_recognised(api: RunningFake) -> None:
    api.configure(rpd=1)
    async with client(api.url) as c:
        await c.generate("gemini-2.5-flash", "a")
        with pytest.raises(CallFailed) as caught:
            await c.generate("gemini-2.5-flash", "b")
    assert any(v.per_day for v in caught.value.violations)


async def test_bad_key_reason_is_extracted(api: RunningFake) -> None:
    with pytest.raises(CallFailed) as caught:
        await generate(api, "x", key="bad")
    assert caught.value.code == 400 and caught.value.reason == "API_KEY_INVALID"
    assert "bad" not in caught.value.message.split()  # the key itself is never echoed


@pytest.mark.parametrize(
    ("marker", "code", "status"),
    [
        ("[[fail:500:1]]", 500, "INTERNAL"),
        ("[[fail:503:1]]", 503, "UNAVAILABLE"),
        ("[[invalid]]", 400, "INVALID_ARGUMENT"),
    ],
)
async def test_http_errors_become_call_failed(api: RunningFake, marker: str, code: int, status: str) -> None:
    with pytest.raises(CallFailed) as caught:
        await generate(api, f"x {marker}")
    assert (caught.value.code, caught.value.status, caught.value.transport) == (code, status, False)


async def test_dropped_connection_is_a_transport_failure_without_hidden_sdk_retry(api: RunningFake) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(CallFailed) as caught:
        await generate(api, "x [[drop:1]]")
    assert caught.value.transport and caught.value.code is None
    # the SDK's own aiohttp path would sleep 1-10 s and retry; retries are ours alone
    assert asyncio.get_running_loop().time() - started < 1.0
    assert api.stats()["by_prompt"]["x [[drop:1]]"] == 1


async def test_timeout_is_a_transport_failure(api: RunningFake) -> None:
    with pytest.raises(CallFailed) as caught:
        await generate(api, "x [[sleep:2]]", timeout=0.3)
    assert caught.value.status == "DEADLINE_EXCEEDED" and caught.value.transport


async def test_connection_refused_is_a_transport_failure() -> None:
    with pytest.raises(CallFailed) as caught:
        async with client("http://127.0.0.1:9") as c:
            await c.generate("gemini-2.5-flash", "x")
    assert caught.value.transport


@pytest.mark.timing
async def test_connection_pool_allows_the_whole_concurrency(api: RunningFake) -> None:
    # httpx2's default pool stops at 100 in flight; our session is sized to the concurrency cap
    api.configure(latency=0.5)
    async with client(api.url, concurrency=120) as c:
        await asyncio.gather(*(c.generate("gemini-2.5-flash", f"p{i}") for i in range(120)))
    assert api.stats()["peak_in_flight"] >= 120  # (a slow request of an earlier test may still be in flight)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("37s", 37.0), ("0.347s", 0.347), ("45.837906927s", 45.837906927), ("x", None), (None, None)],
)
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_fast_membership_gives_the_answers_the_sdk_models_gave() -> None:
    # gembulk makes `key in sdk_model` answer False at once; pydantic's own iteration yields (name, value)
    # pairs, which a string never equals, so the answer was always False: check it on real models.
    import pydantic
    from google.genai import types

    settings = GenerationSettings(
        system="sys", temperature=0.3, max_output_tokens=99, json_schema={"type": "object"}
    )
    models = [
        generate_config(settings),
        types.Part(text="x"),
        types.Content(role="user", parts=[types.Part(text="y")]),
    ]
    for model in models:
        for name in type(model).model_fields:
            assert (name in model) is False
            assert any(name == key for key, _ in pydantic.BaseModel.__iter__(model))  # the field is there


async def test_one_config_serves_many_requests_unchanged(api: RunningFake) -> None:
    # the shared config is copied shallowly by the SDK: it must come out of every call as it went in
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    settings = GenerationSettings(system="be brief", json_schema=schema, temperature=0.2)
    async with client(api.url, system="be brief", json_schema=schema, temperature=0.2) as c:
        before = c._config.model_dump()
        outcomes = await asyncio.gather(*(c.generate("gemini-2.5-flash", f"q{i}") for i in range(20)))
        assert c._config.model_dump() == before
    assert all(o.ok and isinstance(o.parsed["n"], int) for o in outcomes)
    assert schema == {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert generate_config(settings).model_dump() == before


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy")


@pytest.mark.parametrize(
    ("variable", "netrc", "expected"),
    [
        (None, None, False),  # nothing configured: trust_env would find nothing for any request
        ("HTTPS_PROXY", None, True),
        ("http_proxy", None, True),
        ("ALL_PROXY", None, False),  # aiohttp reads only http, https, ws and wss proxies
        ("NO_PROXY", None, False),  # a bypass list alone routes nothing anywhere
        (None, ".netrc", True),
        (None, "_netrc", True),
        ("NETRC", None, True),
    ],
)
def test_trust_env_is_kept_whenever_the_environment_could_route_a_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str | None, netrc: str | None, expected: bool
) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if variable is not None:
        monkeypatch.setenv(variable, "http://127.0.0.1:3128" if variable != "NETRC" else str(tmp_path / "n"))
    if netrc is not None:
        (tmp_path / netrc).write_text("machine example.com login a password b\n")
    assert environment_routes_requests() is expected


async def test_one_tls_context_is_the_one_the_sdk_would_give_aiohttp() -> None:
    # the shared context must trust what the SDK's own aiohttp context trusts, and reach every request
    import ssl

    from google.genai import _api_client, types

    own = _api_client.BaseApiClient._ensure_aiohttp_ssl_ctx(types.HttpOptions())["ssl"]
    options = shared_tls_options()
    shared = options["async_client_args"]["ssl"]
    assert isinstance(shared, ssl.SSLContext)
    assert shared.cert_store_stats() == own.cert_store_stats()
    assert (shared.verify_mode, shared.check_hostname) == (own.verify_mode, own.check_hostname)
    async with client("http://127.0.0.1:9") as c:
        sdk = c._api_client
        assert isinstance(sdk._async_client_session_request_args["ssl"], ssl.SSLContext)
        assert sdk._async_client_session_request_args["ssl"].cert_store_stats() == own.cert_store_stats()
        assert sdk._websocket_ssl_ctx["ssl"] is sdk._async_client_session_request_args["ssl"]


def test_response_model_warm_up_builds_what_an_answer_needs() -> None:
    # the warm-up reads a typical answer through the SDK's own conversion, as the first real one would
    from google.genai import types

    from gembulk.client import outcome_from_json
    from gembulk.client.sdk_patches import WARMUP_ANSWER as _WARMUP_ANSWER
    from gembulk.client.sdk_patches import warm_request_models as _warm_request_models
    from gembulk.client.sdk_patches import warm_response_models as _warm_response_models

    _warm_response_models()
    assert types.GenerateContentResponse.__pydantic_complete__
    outcome = outcome_from_json(_WARMUP_ANSWER, parse_json=False)
    assert outcome.ok and outcome.text == "x"
    _warm_request_models(generate_config(GenerationSettings(system="s")))
    assert types._GenerateContentParameters.__pydantic_complete__


def _answer_with_unknown_fields() -> dict:
    # an answer as the SDK's wire conversion leaves it, with fields no model knows at every level
    return {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "a", "thought": False, "futurePartField": 1},
                        {"function_call": {"name": "f", "args": {"x": [1, {"y": 2}]}, "extra": 3}},
                        {"inline_data": {"mime_type": "text/plain", "data": "eA==", "what": 4}},
                    ],
                    "role": "model",
                    "unknown": {"nested": True},
                },
                "finish_reason": "STOP",
                "safety_ratings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "LOW", "z": 1}],
                "citation_metadata": {"citations": [{"start_index": 1, "uri": "u", "new": 2}]},
                "grounding_metadata": {"web_search_queries": ["q"], "later": {"a": 1}},
                "index": 0,
                "newCandidateField": [1, 2],
            },
            {"content": {"parts": [], "role": "model"}, "finishReason": "MAX_TOKENS"},
        ],
        "usage_metadata": {
            "prompt_token_count": 3,
            "promptTokensDetails": [{"modality": "TEXT", "token_count": 3, "extra": 1}],
            "futureCount": 9,
        },
        "prompt_feedback": {"block_reason": None, "unknown": "x"},
        "model_version": "m",
        "sdk_http_response": {"headers": {"a": "b"}},
        "automatic_function_calling_history": [{"parts": [{"text": "h", "odd": 1}], "role": "user"}],
        "topLevelNew": {"x": 1},
    }


def test_response_pruning_keeps_and_drops_what_the_sdk_did(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from google.genai import _common, types

    fast = _common._remove_extra_fields
    original = fast.__wrapped__
    pruned = {}
    for model in (types.GenerateContentResponse, types.Candidate, types.Content):
        answer = _answer_with_unknown_fields()
        if model is types.Candidate:
            answer = answer["candidates"][0]
        elif model is types.Content:
            answer = answer["candidates"][0]["content"]
        ours, theirs = copy.deepcopy(answer), copy.deepcopy(answer)
        for _ in range(2):  # the second pass runs on the remembered plans
            ours = copy.deepcopy(answer)
            fast(model, ours)
        with monkeypatch.context() as m:
            m.setattr(_common, "_remove_extra_fields", original)  # its recursion must be its own too
            original(model, theirs)
        assert ours == theirs
        assert ours != answer  # something was dropped
        pruned[model] = ours
    whole = str(pruned[types.GenerateContentResponse])
    assert "futurePartField" not in whole and "topLevelNew" not in whole and "'z'" not in whole
    assert "'x': [1, {'y': 2}]" in whole  # free-form JSON (function call args) is left alone
