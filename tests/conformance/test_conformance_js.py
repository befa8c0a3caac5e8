"""Conformance, JavaScript side: the core flows of js_flows.mjs with the newest @google/genai, installed on
demand into .conformance/; skipped, with the reason, where node/npm or the npm registry are missing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conformance import environments
from tests.fake_support import running_fake

SCRIPT = Path(__file__).with_name("js_flows.mjs")


def test_core_flows_with_the_javascript_sdk(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--other-clients"):
        pytest.skip("@google/genai is for `make conformance` (pytest --other-clients)")
    try:
        version, script = environments.node_sdk(SCRIPT)
    except environments.Unavailable as exc:
        pytest.skip(f"no @google/genai to run: {exc}")
    with running_fake(batch_pending=0.1, batch_running=0.1) as api:
        done = subprocess.run(
            ["node", str(script), api.url], capture_output=True, text=True, timeout=120, check=False
        )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["sdk"] == version
    assert report["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failed"].items())
    assert len(report["passed"]) == 8
