"""Conformance, SDK side: every flow of sdk_flows.py with the project's google-genai, and the same flows
under the pinned and the newest google-genai from the index, each in its own venv made on demand."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from google import genai

from tests.conformance import environments, sdk_flows
from tests.fake_support import RunningFake, running_fake

# Short batch phases and video processing keep the flows to seconds.
FAKE = {"batch_pending": 0.1, "batch_running": 0.1, "file_processing": 0.3}


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake(**FAKE) as server:
        yield server


@pytest.fixture(scope="module")
def client(api: RunningFake) -> Iterator[genai.Client]:
    made = sdk_flows.make_client(api.url)
    yield made
    made.close()


@pytest.mark.parametrize("flow", list(sdk_flows.FLOWS))
def test_flow_with_the_project_sdk(client: genai.Client, flow: str) -> None:
    sdk_flows.FLOWS[flow](client)


@pytest.mark.parametrize("which", ["pinned", "newest"])
def test_every_flow_with_another_sdk_version(
    api: RunningFake, which: str, request: pytest.FixtureRequest
) -> None:
    if not request.config.getoption("--other-clients"):
        pytest.skip("other google-genai versions are for `make conformance` (pytest --other-clients)")
    try:
        version = environments.sdk_version(which)
        if version == environments.installed_sdk():
            pytest.skip(
                f"google-genai {version} ({which}) is the project venv's own: the in-process flows ran it"
            )
        python = environments.sdk_python(version)
    except environments.Unavailable as exc:
        pytest.skip(f"no {which} google-genai venv: {exc}")
    script = environments.ROOT / "tests" / "conformance" / "sdk_flows.py"
    done = subprocess.run(
        [str(python), str(script), api.url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["sdk"] == version
    assert report["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failed"].items())
    assert set(report["passed"]) == set(sdk_flows.FLOWS)
