"""The fake's cachedContents surface through the real google-genai SDK: lifetimes on an injected clock,
paging, the refusals of a cache used the wrong way, and what a request served from a cache reports."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from gembulk.fake import count_tokens
from gembulk.fake.caches import CONFLICT, NOT_FOUND
from tests.clock import FakeClock
from tests.fake_support import Clients, RunningFake, running_fake

MODEL = "gemini-2.5-flash"
DOCUMENT = "word " * 1200  # 1,500 tokens in the fake's count: above 2.5 Flash's caching minimum of 1,024
START = 1_800_000_000.0  # the fake's clock: 2027-01-15


@pytest.fixture
def api() -> Iterator[RunningFake]:
    """A fresh fake per test (caches survive /_fake/reset), its cache store on a manual clock."""
    with running_fake() as server:
        server.server.caches.clock = FakeClock(START)
        yield server


@pytest.fixture
def clock(api: RunningFake) -> FakeClock:
    found = api.server.caches.clock
    assert isinstance(found, FakeClock)
    return found


@pytest.fixture
def client(api: RunningFake) -> Iterator[genai.Client]:
    made = Clients(api.url)
    yield made()
    made.close()


def refused(call: Callable[[], object]) -> errors.APIError:
    with pytest.raises(errors.APIError) as raised:
        call()
    return raised.value


def create(client: genai.Client, model: str = MODEL, **config: Any) -> types.CachedContent:
    settings = types.CreateCachedContentConfig(contents=[DOCUMENT], **config)
    return client.caches.create(model=model, config=settings)


def at(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def test_a_cache_reports_its_times_tokens_and_name(client: genai.Client) -> None:
    cache = create(client, display_name="handbook", ttl="90s")
    assert (cache.name or "").startswith("cachedContents/") and cache.display_name == "handbook"
    assert cache.model == f"models/{MODEL}"
    assert cache.create_time == cache.update_time == at(START)
    assert cache.expire_time == at(START + 90)
    assert cache.usage_metadata is not None
    assert cache.usage_metadata.total_token_count == count_tokens(DOCUMENT)
    assert client.caches.get(name=cache.name or "") == cache


def test_an_expired_cache_is_gone_for_every_verb(client: genai.Client, clock: FakeClock) -> None:
    cache = create(client, ttl="60s")
    name = cache.name or ""
    use = types.GenerateContentConfig(cached_content=name)
    clock.advance(59.5)
    assert client.models.generate_content(model=MODEL, contents="q", config=use).text
    clock.advance(0.5)
    calls: list[Callable[[], object]] = [
        lambda: client.caches.get(name=name),
        lambda: client.caches.update(name=name, config=types.UpdateCachedContentConfig(ttl="60s")),
        lambda: client.caches.delete(name=name),
        lambda: client.models.generate_content(model=MODEL, contents="q", config=use),
    ]
    for call in calls:
        error = refused(call)
        assert (error.code, error.status, error.message) == (403, "PERMISSION_DENIED", NOT_FOUND)
    assert list(client.caches.list()) == []


def test_a_new_ttl_counts_from_the_update_and_keeps_the_cache(
    api: RunningFake, client: genai.Client, clock: FakeClock
) -> None:
    name = create(client, ttl="60s").name or ""
    clock.advance(50)
    updated = client.caches.update(name=name, config=types.UpdateCachedContentConfig(ttl="100s"))
    assert updated.expire_time == at(START + 150) and updated.update_time == at(START + 50)
    assert updated.create_time == at(START)
    clock.advance(60)  # past the first expiry, before the new one
    assert client.caches.get(name=name).expire_time == at(START + 150)
    assert api.stats()["cache_ttl_updates"] == 1


def test_an_absolute_expiry_is_kept_as_given(client: genai.Client, clock: FakeClock) -> None:
    when = at(START + 7200)
    cache = create(client, expire_time=when)
    assert cache.expire_time == when
    moved = client.caches.update(
        name=cache.name or "", config=types.UpdateCachedContentConfig(expire_time=at(START + 30))
    )
    assert moved.expire_time == at(START + 30)
    clock.advance(31)
    assert refused(lambda: client.caches.get(name=cache.name or "")).code == 403


def test_without_a_lifetime_a_cache_lives_one_hour(client: genai.Client) -> None:
    assert create(client).expire_time == at(START + 3600)


def raw(api: RunningFake, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api.url}/v1beta/{path}", data=data, method=method)
    request.add_header("x-goog-api-key", "k")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


@pytest.mark.parametrize(
    ("lifetime", "message"),
    [
        (
            {"expireTime": "next tuesday"},
            "Invalid value at 'cached_content.expire_time' (type.googleapis.com/google.protobuf.Timestamp), "
            '"next tuesday"',
        ),
        (
            {"ttl": "1h"},
            "Invalid value at 'cached_content.ttl' (type.googleapis.com/google.protobuf.Duration), \"1h\"",
        ),
    ],
)
def test_a_malformed_lifetime_is_refused_and_nothing_is_created(
    api: RunningFake, lifetime: dict[str, str], message: str
) -> None:
    body = {"model": f"models/{MODEL}", "contents": [{"role": "user", "parts": [{"text": DOCUMENT}]}]}
    status, answer = raw(api, "POST", "cachedContents", {**body, **lifetime})
    assert status == 400 and answer["error"]["message"] == message
    assert api.stats()["caches_created"] == 0


def test_the_list_pages_and_the_sdk_pager_walks_every_page(api: RunningFake, client: genai.Client) -> None:
    names = {create(client, display_name=f"c{i}").name for i in range(7)}
    status, first = raw(api, "GET", "cachedContents?pageSize=3")
    assert status == 200 and len(first["cachedContents"]) == 3 and first["nextPageToken"]
    status, rest = raw(api, "GET", f"cachedContents?pageSize=5&pageToken={first['nextPageToken']}")
    assert len(rest["cachedContents"]) == 4 and "nextPageToken" not in rest
    pager = client.caches.list(config=types.ListCachedContentsConfig(page_size=2))
    assert {cache.name for cache in pager} == names


def test_a_deleted_cache_is_deleted_once(api: RunningFake, client: genai.Client) -> None:
    name = create(client).name or ""
    client.caches.delete(name=name)
    assert refused(lambda: client.caches.delete(name=name)).code == 403
    stats = api.stats()
    assert (stats["caches_created"], stats["caches_deleted"], stats["caches_live"]) == (1, 1, 0)


OTHER_MODEL = (
    "Model used by GenerateContent request (models/gemini-2.0-flash) and CachedContent "
    f"(models/{MODEL}) has to be the same."
)


@pytest.mark.parametrize(
    ("model", "config", "message"),
    [
        ("gemini-2.0-flash", {}, OTHER_MODEL),
        (MODEL, {"system_instruction": "be brief"}, CONFLICT),
        (
            MODEL,
            {"tools": [types.Tool(function_declarations=[types.FunctionDeclaration(name="f")])]},
            CONFLICT,
        ),
    ],
)
def test_a_request_that_does_not_fit_its_cache_is_refused(
    api: RunningFake, client: genai.Client, model: str, config: dict[str, Any], message: str
) -> None:
    name = create(client).name
    use = types.GenerateContentConfig(cached_content=name, **config)
    error = refused(lambda: client.models.generate_content(model=model, contents="q", config=use))
    assert (error.code, error.message) == (400, message)
    assert api.stats()["cached_requests"] == 0


def test_a_request_served_from_a_cache_counts_its_tokens_as_cached(
    api: RunningFake, client: genai.Client
) -> None:
    name = create(client).name
    use = types.GenerateContentConfig(cached_content=name)
    answer = client.models.generate_content(model=MODEL, contents="which word?", config=use)
    usage = answer.usage_metadata
    assert usage is not None
    cached = count_tokens(DOCUMENT)
    assert usage.cached_content_token_count == cached
    assert usage.prompt_token_count == cached + count_tokens("which word?")
    assert api.stats()["cached_requests"] == 1


@pytest.mark.parametrize("model", ["gemini-embedding-001", "no-such-model"])
def test_a_model_that_cannot_cache_is_404_naming_create_cached_content(
    client: genai.Client, model: str
) -> None:
    error = refused(lambda: create(client, model=model))
    assert error.code == 404
    assert f"models/{model} is not found" in (error.message or "")
    assert "createCachedContent" in (error.message or "")


def test_too_small_is_refused_strictly_and_accepted_leniently() -> None:
    small = types.CreateCachedContentConfig(contents=["just a few words"])
    with running_fake() as strict, running_fake(lenient=True) as lenient:
        made = Clients(strict.url)
        try:
            error = refused(lambda: made().caches.create(model=MODEL, config=small))
            assert error.message == (
                f"Cached content is too small. total_token_count={count_tokens('just a few words')}, "
                "min_total_token_count=1024"
            )
            accepted = Clients(lenient.url)
            cache = accepted().caches.create(model=MODEL, config=small)
            accepted.close()
        finally:
            made.close()
    assert cache.usage_metadata is not None and cache.usage_metadata.total_token_count == 4
