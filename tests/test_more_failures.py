"""SDK and transport exceptions turned into CallFailed: the real API's error bodies (verbatim, from
gemini-real-responses.md) read by the SDK's own APIError, errors the SDK raises over HTTP against the fake,
transport faults, and bodies that are malformed in every way a proxy or an older API could make them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from google.genai import errors

from gembulk.client.failures import call_failed_from_api_error, parse_duration, scrub, translate
from gembulk.records import CallFailed, QuotaViolation
from tests.fake_support import Clients, RunningFake, running_fake

KEY = "AIzaSy-test-key-that-must-never-show"
RPM_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/x"}],
}


def quota(*violations: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": list(violations)}


def retry_info(delay: Any) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def body(code: int, status: str, message: str, *details: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def failed(code: int, response: Any) -> CallFailed:
    return call_failed_from_api_error(errors.APIError(code, response), KEY)


def test_the_free_tier_429_gives_its_delay_and_quota() -> None:
    # gemini-real-responses.md 2a: Help, then QuotaFailure with a string quotaValue, then RetryInfo.
    violation = {
        "quotaMetric": REQUESTS_METRIC,
        "quotaId": RPM_ID,
        "quotaDimensions": {"model": "gemini-3-flash", "location": "global"},
        "quotaValue": "5",
    }
    message = "You exceeded your current quota ...\nPlease retry in 58.217843437s."
    got = failed(429, body(429, "RESOURCE_EXHAUSTED", message, HELP, quota(violation), retry_info("58s")))
    assert (got.status, got.code, got.retry_delay, got.reason) == ("RESOURCE_EXHAUSTED", 429, 58.0, None)
    assert got.violations == (QuotaViolation(RPM_ID, 5, REQUESTS_METRIC),)
    assert got.message == message and not got.transport


def test_several_violations_without_a_value_keep_their_order() -> None:
    # 2c: three violations, none with a quotaValue; RetryInfo first this time.
    ids = [
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        RPM_ID,
        "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    ]
    metrics = [REQUESTS_METRIC, REQUESTS_METRIC, TOKENS_METRIC]
    violations = [{"quotaMetric": m, "quotaId": i} for i, m in zip(ids, metrics, strict=True)]
    got = failed(429, body(429, "RESOURCE_EXHAUSTED", "m", retry_info("47s"), quota(*violations)))
    assert got.violations == tuple(QuotaViolation(i, None, m) for i, m in zip(ids, metrics, strict=True))
    assert got.retry_delay == 47.0


def test_a_bare_429_has_no_delay_and_no_quota() -> None:
    got = failed(429, body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."))
    assert (got.retry_delay, got.violations, got.reason) == (None, (), None)
    assert got.message == "Resource has been exhausted (e.g. check quota)."


def test_the_bad_key_400_carries_its_reason() -> None:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    got = failed(400, body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", info))
    assert (got.status, got.code, got.reason) == ("INVALID_ARGUMENT", 400, "API_KEY_INVALID")


@pytest.mark.parametrize(
    ("details", "delay", "violations"),
    [
        (["a string", 7, None], None, ()),  # details that are not objects are skipped
        ([retry_info("soon")], None, ()),
        ([retry_info(30)], None, ()),  # a number, not a Duration string
        ([retry_info("-3s")], 0.0, ()),  # never a negative wait
        ([retry_info("0.25s")], 0.25, ()),
        ([quota({"quotaMetric": "m"}, "junk", {"quotaId": "Q", "quotaValue": "lots"})], None, (("Q", None),)),
        ([quota({"quotaId": "Q", "quotaValue": 12})], None, (("Q", 12),)),
        ([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": None}], None, ()),
    ],
)
def test_malformed_details_are_read_as_far_as_they_make_sense(
    details: list[Any], delay: float | None, violations: tuple[tuple[str, int | None], ...]
) -> None:
    got = failed(
        429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "x", "details": details}}
    )
    assert got.retry_delay == delay
    assert tuple((v.quota_id, v.limit) for v in got.violations) == violations


@pytest.mark.parametrize(
    ("code", "response", "status", "message"),
    [
        (502, "<html>Bad Gateway</html>", "HTTP_502", ""),  # a proxy's page: not JSON at all
        (503, {"error": {"code": 503, "message": "overloaded"}}, "HTTP_503", "overloaded"),
        (500, {"error": "broken"}, "HTTP_500", ""),  # `error` that is not an object
        (404, [{"error": {"code": 404, "status": "NOT_FOUND", "message": "gone "}}], "NOT_FOUND", "gone"),
    ],
)
def test_an_answer_without_a_status_is_named_by_its_http_code(
    code: int, response: Any, status: str, message: str
) -> None:
    got = failed(code, response)
    assert (got.status, got.code, got.message) == (status, code, message)


def test_the_key_is_scrubbed_from_every_message() -> None:
    got = failed(400, body(400, "INVALID_ARGUMENT", f"API key {KEY} not valid. ({KEY})"))
    assert KEY not in got.message and got.message == "API key *** not valid. (***)"
    assert scrub("nothing to hide", "") == "nothing to hide"  # no key: nothing replaced


@pytest.mark.parametrize(
    ("exc", "status", "needle"),
    [
        (TimeoutError(), "DEADLINE_EXCEEDED", "no answer within 2.5 s"),
        (
            aiohttp.ClientConnectionError(f"cannot reach https://x/?key={KEY}"),
            "UNAVAILABLE",
            "connection error",
        ),
        (aiohttp.ServerDisconnectedError(), "UNAVAILABLE", "ServerDisconnectedError"),
        (json.JSONDecodeError("Expecting value", "<html>", 0), "BAD_RESPONSE", "a body that is not JSON"),
        (ConnectionResetError(104, f"reset by peer ({KEY})"), "UNAVAILABLE", "network error"),
    ],
)
def test_transport_faults_are_retryable_failures_without_the_key(
    exc: BaseException, status: str, needle: str
) -> None:
    got = translate(exc, api_key=KEY, timeout=2.5)
    assert isinstance(got, CallFailed)
    assert (got.status, got.transport, got.code) == (status, True, None)
    assert needle in got.message and KEY not in got.message


@pytest.mark.parametrize(
    "exc", [asyncio.CancelledError(), KeyboardInterrupt(), ValueError("a bug"), KeyError("k")]
)
def test_cancellation_and_bugs_pass_through_untouched(exc: BaseException) -> None:
    assert translate(exc, api_key=KEY, timeout=1.0) is exc


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("45.837906927s", 45.837906927), ("0s", 0.0)])
def test_durations_in_protobuf_json(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1m", "1.5", "abc s", None, 3])
def test_what_is_not_a_duration_is_none(text: object) -> None:
    assert parse_duration(text) is None


# -- the errors the SDK really raises, over HTTP, from the fake --------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake(rpm=1, window=60.0, bad_keys=(KEY,)) as server:
        yield server


@pytest.fixture
def clients(api: RunningFake) -> Iterator[Clients]:
    api.reset()
    made = Clients(api.url)
    yield made
    made.close()


def raised_by(call: Any) -> errors.APIError:
    with pytest.raises(errors.APIError) as caught:
        call()
    return caught.value


def test_a_real_429_from_the_sdk_says_how_long_and_which_quota(clients: Clients) -> None:
    client = clients()
    client.models.generate_content(model="gemini-2.5-flash", contents="first")
    got = call_failed_from_api_error(
        raised_by(lambda: client.models.generate_content(model="gemini-2.5-flash", contents="second"))
    )
    assert (got.status, got.code) == ("RESOURCE_EXHAUSTED", 429)
    assert got.retry_delay is not None and 0 < got.retry_delay <= 60
    (violation,) = got.violations
    assert (
        violation.limit == 1 and "PerMinute" in violation.quota_id and violation.metric.endswith("_requests")
    )


def test_a_real_bad_key_answer_never_shows_the_key(clients: Clients) -> None:
    error = raised_by(lambda: clients(KEY).models.generate_content(model="gemini-2.5-flash", contents="x"))
    got = translate(error, api_key=KEY, timeout=None)
    assert isinstance(got, CallFailed)
    assert (got.status, got.code, got.reason) == ("INVALID_ARGUMENT", 400, "API_KEY_INVALID")
    assert KEY not in str(got) and KEY not in got.message


def test_a_real_404_names_the_model(clients: Clients) -> None:
    error = raised_by(lambda: clients().models.generate_content(model="gemini-9-ultra", contents="x"))
    got = call_failed_from_api_error(error)
    assert (got.status, got.code, got.retry_delay, got.violations) == ("NOT_FOUND", 404, None, ())
    assert got.message.startswith("models/gemini-9-ultra is not found for API version")
