"""The suite's own guarantee: no process a test starts outlives it, in one process or under xdist."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.cli_support import describe, running_processes

pytest_plugins = ["pytester"]
# Orphans are found through PR_SET_CHILD_SUBREAPER and fakes stopped through PR_SET_PDEATHSIG: Linux only.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process controls")

ROOT = Path(__file__).resolve().parents[1]

LEAKY_TESTS = """
import os, subprocess, sys

def test_leaves_a_child():
    subprocess.Popen(["sleep", "61"])

def test_leaves_an_orphan():
    subprocess.run([sys.executable, "-c", "import subprocess; subprocess.Popen(['sleep', '62'])"], check=True)

def test_crashes_its_worker_with_a_child_in_its_own_session():
    if os.environ.get("PYTEST_XDIST_WORKER"):
        subprocess.Popen(["setsid", "sleep", "63"])
        os._exit(1)

def test_cleans_up():
    subprocess.run(["true"], check=True)
"""


STARTER = """
import subprocess, time
from tests.cli_support import dying_with_this_process
child = subprocess.Popen(dying_with_this_process(["sleep", "64"]))
print(child.pid, flush=True)
time.sleep(60)
"""


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def leaked_sleeps() -> list[str]:
    return [describe(p) for p in running_processes() if "sleep" in describe(p)]


@pytest.fixture
def leaky_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # tests.cli_support comes from this checkout
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):  # when this suite runs under xdist
        monkeypatch.delenv(name, raising=False)
    return pytester


def test_a_process_left_by_a_test_is_an_error_naming_it(leaky_suite: pytest.Pytester) -> None:
    result = leaky_suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        ["*processes started by this test were still running (now killed)*", "*: sleep 61"]
    )
    result.stdout.fnmatch_lines(["*: sleep 62"])  # orphaned, yet found: this process is its subreaper
    assert leaked_sleeps() == []


def test_under_xdist_the_controller_catches_what_a_dead_worker_left(leaky_suite: pytest.Pytester) -> None:
    result = leaky_suite.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*worker 'gw?' crashed while running*"])
    result.stdout.fnmatch_lines(
        ["*processes still running at the end of the tests (now killed)*", "*: sleep 63"]
    )
    assert leaked_sleeps() == []


def test_the_kernel_stops_a_command_whose_starter_was_killed() -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=child_env()
    )
    assert starter.stdout is not None
    child = psutil.Process(int(starter.stdout.readline()))
    deadline = time.monotonic() + 10
    while child.name() != "sleep":  # the launcher has asked for the signal, then become sleep
        assert time.monotonic() < deadline
        time.sleep(0.01)
    starter.kill()
    starter.wait(timeout=10)
    starter.stdout.close()
    # the orphan is re-parented to this process (a subreaper), so it is ours to reap once it is gone
    assert child.wait(timeout=10) == -15  # SIGTERM, sent by the kernel
