"""The fake server itself: bad input, wire formatting, control endpoints and the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from gembulk.fake import expected_text
from tests.fake_support import Clients, RunningFake, running_fake

MODEL = "gemini-2.5-flash"
ROOT = Path(__file__).resolve().parents[1]
KEY = {"x-goog-api-key": "k"}


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake() as server:
        yield server


def still_serving(api: RunningFake) -> None:
    clients = Clients(api.url)
    try:
        assert clients().models.generate_content(model=MODEL, contents="alive?").text == expected_text(
            "alive?"
        )
    finally:
        clients.close()


def test_error_bodies_are_pretty_google_errors(api: RunningFake) -> None:
    response = httpx2.post(
        f"{api.url}/v1beta/models/{MODEL}:generateContent", headers=KEY, content=b'{"contents": ['
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.text.startswith('{\n  "error": {\n    "code": 400,\n')
    assert response.text.endswith("}\n")
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid JSON payload received.")
    still_serving(api)


def test_success_bodies_are_compact(api: RunningFake) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    response = httpx2.post(f"{api.url}/v1/models/{MODEL}:generateContent", headers=KEY, json=body)
    assert response.content.startswith(b'{"candidates":[{')
    assert response.content.endswith(b"}\n")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/v1beta/models/{MODEL}:generateContent", b"[]"),
        ("POST", f"/v1beta/models/{MODEL}:generateContent", b'{"contents": []}'),
        ("POST", f"/v1beta/models/{MODEL}:generateContent", b"\xff\xfe"),
        ("GET", f"/v1beta/models/{MODEL}:generateContent", b""),
        ("POST", f"/v1beta/models/{MODEL}:explode", b"{}"),
        ("GET", "/nothing/here", b""),
        ("DELETE", "/v1beta/files", b""),
        ("PUT", "/v1beta/batches/abc", b""),
        ("GET", "/", b""),
    ],
)
def test_bad_requests_get_google_errors_and_the_server_keeps_serving(
    api: RunningFake, method: str, path: str, body: bytes
) -> None:
    response = httpx2.request(method, api.url + path, headers=KEY, content=body)
    assert response.status_code in (400, 404, 405)
    error = response.json()["error"]
    assert error["code"] == response.status_code
    assert error["status"] in ("INVALID_ARGUMENT", "NOT_FOUND")
    assert "Traceback" not in response.text
    still_serving(api)


def test_control_endpoints() -> None:
    with running_fake() as api:
        clients = Clients(api.url)
        client = clients(key="key-a")
        client.models.generate_content(model=MODEL, contents="counted")
        client.models.generate_content(model=MODEL, contents="counted")
        client.models.count_tokens(model=MODEL, contents="counted")
        stats = api.stats()
        assert set(stats) == {
            "requests_by_status",
            "generate_requests",
            "count_tokens_requests",
            "rate_limited",
            "in_flight",
            "peak_in_flight",
            "dropped",
            "api_faults",
            "models_get_requests",
            "by_prompt",
            "distinct_requests",
            "max_attempts_per_request",
            "batches_created",
            "files_uploaded",
            "uploaded_bytes",
            "inline_parts",
            "inline_bytes",
            "file_parts",
            "media_sha256",
            "caches_created",
            "caches_deleted",
            "caches_live",
            "cache_ttl_updates",
            "cached_requests",
            "keys_seen",
        }
        assert stats["requests_by_status"] == {"200": 3}
        assert (stats["caches_created"], stats["caches_live"], stats["cached_requests"]) == (0, 0, 0)
        assert (stats["generate_requests"], stats["count_tokens_requests"]) == (2, 1)
        assert stats["by_prompt"] == {"counted": 2}
        assert (stats["distinct_requests"], stats["max_attempts_per_request"]) == (1, 2)
        assert stats["keys_seen"] == ["key-a"]
        client.models.get(model=MODEL)
        assert api.stats()["models_get_requests"] == 1

        config = api.configure(rpm=60, latency=0.01, bad_keys=["nope"], models=["extra-model"])
        assert (config["rpm"], config["latency"], config["bad_keys"], config["models"]) == (
            60,
            0.01,
            ["nope"],
            ["extra-model"],
        )
        assert client.models.generate_content(model="extra-model", contents="x").text == expected_text("x")
        rejected = httpx2.post(f"{api.url}/_fake/config", json={"no_such_field": 1})
        assert rejected.status_code == 400

        api.reset()
        stats = api.stats()
        assert stats["generate_requests"] == 0 and stats["by_prompt"] == {} and stats["keys_seen"] == []
        clients.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_line_prints_url_serves_and_exits_cleanly(stop_signal: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gembulk.fake",
            "--port",
            "0",
            "--rpm",
            "100",
            "--bad-key",
            "x",
            "--model",
            "m1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        clients = Clients(url)
        assert clients().models.generate_content(model="m1", contents="cli").text == expected_text("cli")
        clients.close()
        config = httpx2.post(f"{url}/_fake/config", json={}).json()
        assert (config["rpm"], config["bad_keys"], config["models"]) == (100, ["x"], ["m1"])
    finally:
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Traceback" not in stderr
