"""Quotas, injected faults, latency and counters of the fake, as the real google-genai SDK surfaces them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import httpx2
import pytest
from google.genai import errors, types

from gembulk.fake import count_tokens, expected_text
from tests.fake_support import Clients, RunningFake, running_fake

MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake() as server:
        yield server


@pytest.fixture
def clients(api: RunningFake) -> Iterator[Clients]:
    api.configure(latency=0.0, jitter=0.0, rpm=0, tpm=0, rpd=0, window=60.0, day=86400.0, error_rate=0.0)
    api.reset()
    made = Clients(api.url)
    yield made
    made.close()


def retry_info(error: errors.APIError) -> tuple[str, list[str]]:
    """(retryDelay, quotaIds) read from the error body the SDK keeps in .details."""
    details = error.details["error"]["details"]
    delay = next(d["retryDelay"] for d in details if d["@type"].endswith("google.rpc.RetryInfo"))
    failure = next(d for d in details if d["@type"].endswith("google.rpc.QuotaFailure"))
    return delay, [v["quotaId"] for v in failure["violations"]]


@pytest.mark.timing
def test_rpm_over_a_compressed_window(api: RunningFake, clients: Clients) -> None:
    api.configure(rpm=5, window=1.0)
    client = clients()
    for i in range(5):
        client.models.generate_content(model=MODEL, contents=f"rpm {i}")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="rpm 5")
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert "retry-after" not in error.response.headers
    delay, quota_ids = retry_info(error)
    assert quota_ids == ["GenerateRequestsPerMinutePerProjectPerModel"]
    seconds = float(delay.rstrip("s"))
    assert 0 < seconds <= 1.0
    assert len(delay.rstrip("s").split(".")[1]) == 3  # millisecond precision in a compressed window
    assert error.message.startswith("You exceeded your current quota")
    other_model = client.models.generate_content(model="gemini-2.5-pro", contents="rpm elsewhere")
    assert other_model.text == expected_text("rpm elsewhere")  # quotas are per model
    time.sleep(seconds)
    assert client.models.generate_content(model=MODEL, contents="rpm 5").text == expected_text("rpm 5")
    stats = api.stats()
    assert stats["rate_limited"] == 1
    assert stats["requests_by_status"] == {"200": 7, "429": 1}
    assert stats["by_prompt"]["rpm 5"] == 2


@pytest.mark.timing
def test_tpm_and_a_prompt_larger_than_tpm(api: RunningFake, clients: Clients) -> None:
    api.configure(tpm=20, window=1.0)
    client = clients()
    prompt = "x" * 60  # 15 tokens
    client.models.generate_content(model=MODEL, contents=prompt)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents=prompt)
    assert retry_info(caught.value)[1] == ["GenerateContentInputTokensPerModelPerMinute"]
    with pytest.raises(errors.ClientError) as too_big:
        client.models.generate_content(model="gemini-2.5-pro", contents="y" * 100)
    assert too_big.value.code == 429
    assert count_tokens("y" * 100) > 20


def test_rpd_reports_per_day_with_whole_seconds(api: RunningFake, clients: Clients) -> None:
    api.configure(rpd=2, day=3600.0)
    client = clients()
    client.models.generate_content(model=MODEL, contents="day 1")
    client.models.generate_content(model=MODEL, contents="day 2")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="day 3")
    delay, quota_ids = retry_info(caught.value)
    assert quota_ids == ["GenerateRequestsPerDayPerProjectPerModel"]
    assert "PerDay" in quota_ids[0]
    assert delay.endswith("s") and delay[:-1].isdigit() and 3590 <= int(delay[:-1]) <= 3600


async def test_quota_429_on_the_aiohttp_path(api: RunningFake, clients: Clients) -> None:
    api.configure(rpm=1, window=60.0)
    client = clients()
    await client.aio.models.generate_content(model=MODEL, contents="aio quota 1")
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=MODEL, contents="aio quota 2")
    delay, quota_ids = retry_info(caught.value)
    assert delay[:-1].isdigit() and 59 <= int(delay[:-1]) <= 60
    assert "PerMinute" in quota_ids[0]
    assert "retry-after" not in caught.value.response.headers
    await client.aio.aclose()


def test_fail_marker_fails_n_times_then_succeeds(api: RunningFake, clients: Clients) -> None:
    client = clients()
    prompt = "flaky [[fail:503:2]]"
    for _ in range(2):
        with pytest.raises(errors.ServerError) as caught:
            client.models.generate_content(model=MODEL, contents=prompt)
        assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")
        assert caught.value.message == "The model is overloaded. Please try again later."
    assert client.models.generate_content(model=MODEL, contents=prompt).text == expected_text(prompt)
    stats = api.stats()
    assert stats["by_prompt"][prompt] == 3
    assert stats["max_attempts_per_request"] == 3
    assert stats["requests_by_status"] == {"200": 1, "503": 2}


def test_sdk_retries_recover_from_fail_markers(clients: Clients) -> None:
    retry = types.HttpRetryOptions(attempts=4, initial_delay=0.01, max_delay=0.02, jitter=0.0)
    client = clients(retry_options=retry)
    prompt = "retry me [[fail:500:3]]"
    assert client.models.generate_content(model=MODEL, contents=prompt).text == expected_text(prompt)


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (500, "INTERNAL", "An internal error has occurred. Please retry or report in "),
        (502, "Bad Gateway", "<!DOCTYPE html>"),  # Google's front end sends an HTML page for 502
        (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    ],
)
def test_fail_marker_codes(clients: Clients, code: int, status: str, message: str) -> None:
    with pytest.raises(errors.ServerError) as caught:
        clients().models.generate_content(model=MODEL, contents=f"[[fail:{code}:1]]")
    assert (caught.value.code, caught.value.status) == (code, status)
    assert caught.value.message.startswith(message)


def test_fail_429_marker_carries_retry_info(clients: Clients) -> None:
    with pytest.raises(errors.ClientError) as caught:
        clients().models.generate_content(model=MODEL, contents="[[fail:429:1]] hot")
    delay, quota_ids = retry_info(caught.value)
    assert delay == "1s"
    assert "PerMinute" in quota_ids[0]
    assert caught.value.message.endswith("Please retry in 1.000000000s.")


def test_drop_marker_on_the_sync_httpx2_path(api: RunningFake, clients: Clients) -> None:
    client = clients()
    prompt = "dropped [[drop:1]]"
    with pytest.raises(httpx2.RemoteProtocolError):
        client.models.generate_content(model=MODEL, contents=prompt)
    assert client.models.generate_content(model=MODEL, contents=prompt).text == expected_text(prompt)
    stats = api.stats()
    assert stats["dropped"] == 1
    assert stats["by_prompt"][prompt] == 2


async def test_drop_marker_on_the_aiohttp_path(clients: Clients) -> None:
    # With retry_options set the SDK skips its implicit 1-10 s reconnect sleep and raises at once.
    client = clients(retry_options=types.HttpRetryOptions(attempts=1))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await asyncio.wait_for(client.aio.models.generate_content(model=MODEL, contents="[[drop:1]] aio"), 10)
    response = await client.aio.models.generate_content(model=MODEL, contents="[[drop:1]] aio")
    assert response.text == expected_text("[[drop:1]] aio")
    await client.aio.aclose()


def test_error_rate_splits_between_500_503_and_drops(api: RunningFake, clients: Clients) -> None:
    api.configure(error_rate=1.0, seed=7)
    client = clients()
    seen = set()
    for i in range(30):
        try:
            client.models.generate_content(model=MODEL, contents=f"chaos {i}")
        except errors.ServerError as exc:
            seen.add(exc.code)
        except httpx2.RemoteProtocolError:
            seen.add("drop")
    assert seen == {500, 503, "drop"}
    api.configure(error_rate=0.0)
    assert client.models.generate_content(model=MODEL, contents="calm").text == expected_text("calm")


@pytest.mark.timing
async def test_latency_and_peak_in_flight(api: RunningFake, clients: Clients) -> None:
    api.configure(latency=0.2, jitter=0.05)
    client = clients()
    started = time.perf_counter()
    prompts = [f"parallel {i}" for i in range(10)]
    await asyncio.gather(*(client.aio.models.generate_content(model=MODEL, contents=p) for p in prompts))
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 1.5  # concurrent, not 10 x 0.2 s
    stats = api.stats()
    assert stats["peak_in_flight"] == 10
    assert stats["in_flight"] == 0
    assert stats["generate_requests"] == 10
    assert stats["distinct_requests"] == 10
    await client.aio.aclose()


def test_sleep_marker_adds_latency(clients: Clients) -> None:
    started = time.perf_counter()
    clients().models.generate_content(model=MODEL, contents="slow [[sleep:0.3]]")
    assert time.perf_counter() - started >= 0.3


@pytest.mark.timing
async def test_reset_while_requests_are_in_flight(api: RunningFake, clients: Clients) -> None:
    api.configure(latency=0.3)
    client = clients()
    calls = asyncio.gather(
        *(client.aio.models.generate_content(model=MODEL, contents=f"r{i}") for i in range(3))
    )
    await asyncio.sleep(0.15)
    await asyncio.to_thread(api.reset)  # the control endpoints stay responsive while requests sleep
    await calls
    stats = api.stats()
    assert stats["in_flight"] == 0
    assert stats["generate_requests"] == 0  # counted before the reset
    # Finished after it, but begun before: the period after a reset counts none of them (a killed
    # client's late answers would otherwise land in the next test's or benchmark's figures).
    assert stats["requests_by_status"] == {}
    after = client.models.generate_content(model=MODEL, contents="after")
    assert after.text and api.stats()["requests_by_status"] == {"200": 1}
    await client.aio.aclose()
