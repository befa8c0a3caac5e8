"""Conformance, gembulk's side: its own SDK-facing tests under the lowest google-genai pyproject.toml allows,
in a venv made on demand in .conformance/ (the project venv, like CI, gets the newest). `make conformance`
only (`--sdk-floor`): elsewhere skipped, as the run takes half a minute, more when the venv is made."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from packaging.version import Version

from tests.conformance import environments

# Every test of the files that drive the SDK (the client seam, its patches, the fake it talks to, the
# Batch and Files flows, the context cache), and a few end-to-end runs through the CLI.
TESTS = [
    "tests/test_client.py",
    "tests/test_sdk_patches.py",
    "tests/test_fake_validate.py",
    "tests/test_fake_generate.py",
    "tests/test_batch_units.py",
    "tests/test_fake_batches.py",
    "tests/test_fake_files.py",
    "tests/test_cache.py",
    *(
        f"tests/test_cli_run.py::{name}"
        for name in (
            "test_csv_to_stdout_one_record_per_row_with_expected_answers",
            "test_content_failures_are_failed_rows_not_retried",
            "test_transient_failures_are_retried_to_success",
            "test_fatal_api_conditions_exit_3_at_once",
            "test_json_schema_adds_parsed",
            "test_api_key_never_appears_in_any_output",
        )
    ),
]
_TIMEOUT = 600


def floor_python(floor: str) -> Path:
    try:
        return environments.gembulk_python(floor)
    except environments.Unavailable as exc:
        if "ResolutionImpossible" in str(exc):  # reached the index, but the pins cannot hold together
            pytest.fail(f"google-genai {floor} cannot be installed with gembulk's other pins: {exc}")
        pytest.skip(f"no venv with google-genai {floor}: {exc}")


def run_pytest(python: Path, basetemp: Path) -> subprocess.CompletedProcess[str]:
    """The tests in the floor venv, in a session of their own: on a timeout, the whole of it is killed."""
    args = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}", *TESTS]
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    with subprocess.Popen(
        args,
        cwd=environments.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"the floor run took over {_TIMEOUT} s (killed):\n{output[-4000:]}")
    return subprocess.CompletedProcess(args, process.returncode, output)


def test_gembulk_tests_pass_with_the_lowest_google_genai_allowed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not request.config.getoption("--sdk-floor"):
        pytest.skip("the lowest google-genai run is for `make conformance` (pytest --sdk-floor)")
    floor = environments.sdk_floor()
    python = floor_python(floor)
    installed = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('google-genai'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert Version(installed) == Version(floor), f"the floor venv has google-genai {installed}, not {floor}"
    done = run_pytest(python, tmp_path / "floor")
    assert done.returncode == 0, f"gembulk's tests under google-genai {installed}:\n{done.stdout[-8000:]}"
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]
