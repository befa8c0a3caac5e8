"""Shared fixtures: one fake API process for the session, reset before every test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli_support import FakeAPI


@pytest.fixture(scope="session")
def fake_process() -> Iterator[FakeAPI]:
    # Time is compressed: a 1-second quota window and short batch phases keep the suite fast.
    api = FakeAPI("--window", "1", "--batch-pending", "0.2", "--batch-running", "0.3", "--bad-key", "bad-key")
    yield api
    api.stop()


@pytest.fixture
def fake(fake_process: FakeAPI) -> FakeAPI:
    fake_process.configure(
        latency=0.0,
        jitter=0.0,
        rpm=0,
        tpm=0,
        rpd=0,
        error_rate=0.0,
        api_error_rate=0.0,
        batch_pending=0.2,
        batch_running=0.3,
    )
    fake_process.reset()
    return fake_process
