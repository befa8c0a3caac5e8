"""Shared fixtures: one fake API process per session (per xdist worker), reset before every test that uses
it; and no process a test started outlives it (checked after each test, and at the end of the session)."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import OWNED, FakeAPI, describe, process_ids, running_processes, stop_processes

_interrupted = False


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sdk-floor",
        action="store_true",
        help="also run gembulk's SDK-facing tests under the lowest google-genai allowed (make conformance)",
    )
    parser.addoption(
        "--other-clients",
        action="store_true",
        help="also run the fake against other google-genai versions and @google/genai (make conformance)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # PR_SET_CHILD_SUBREAPER (36): a process orphaned under this one (the child of a gembulk a test
    # killed, the fake of a worker that crashed) is re-parented here instead of to init, so the checks
    # below still see it.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(36, 1)
    # SIGTERM (a CI timeout, `kill`) would end pytest without a teardown; as an interrupt, like Ctrl-C,
    # every fixture still stops what it started.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_keyboard_interrupt() -> None:
    global _interrupted
    _interrupted = True


@pytest.fixture(scope="session", autouse=True)
def no_process_left_at_the_end() -> Iterator[None]:
    """Set up before, so torn down after, every other session fixture: whatever still runs then leaked.
    Under xdist each worker checks its own children; pytest_sessionfinish below checks the controller."""
    yield
    _fail_on_leftovers(running_processes(), "the session")


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """A test that returns (or fails) with a child still running would have it talk to the next test's
    fake: the child is killed here, and the test gets an error naming it."""
    before = process_ids(running_processes())
    yield
    new = [p for p in running_processes() if p.pid not in OWNED and not process_ids([p]) <= before]
    _fail_on_leftovers(new, "this test")


def _fail_on_leftovers(leftovers: list, who: str) -> None:
    if leftovers:
        names = "\n  ".join(describe(p) for p in leftovers)
        stop_processes(leftovers)
        if _interrupted:
            return  # stopped half-way: its processes are expected, and killed above
        pytest.fail(f"processes started by {who} were still running (now killed):\n  {names}", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the timing tests come last (xdist hands tests out in this order): run together at
    the end, apart from the rest, they cost the other workers no wait for each long test in between."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("timing") is not None)


@pytest.fixture(autouse=True)
def alone_if_timing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under xdist, a test marked `timing` runs with no other kind of test beside it: its deadlines and
    quota windows never share the cores with the CPU-heavy rest of the suite. Up to TIMING_SLOTS of them
    run beside each other (they mostly wait), which halves the tail they make at the end of the run.

    Two locks shared by the run's workers make it a two-room lock. An ordinary test passes through the
    "timing" room's door (exclusive: no timing test is running) into the "ordinary" room (shared). A
    timing test holds the "timing" room (shared) and empties the ordinary one (exclusive, then let go):
    once it holds the timing room no ordinary test can enter, and the ones inside have finished.
    """
    if not hasattr(request.config, "workerinput"):
        yield  # one process: nothing runs beside anything
        return
    run_dir = tmp_path_factory.getbasetemp().parent  # the controller's base temp: this run's, no other's
    marker = request.node.get_closest_marker("timing")
    timing_test = marker is not None
    with contextlib.ExitStack() as held:  # closing the files releases the locks (a crashed worker's too)
        timing, ordinary = (held.enter_context((run_dir / name).open("a")) for name in ROOMS)
        if timing_test:
            worker = request.config.workerinput["workerid"]
            held.enter_context(_timing_slot(run_dir, worker, every=bool(marker.kwargs.get("alone"))))
            fcntl.flock(timing, fcntl.LOCK_SH)
            fcntl.flock(ordinary, fcntl.LOCK_EX)  # waits for the ordinary tests still running
            fcntl.flock(ordinary, fcntl.LOCK_UN)
        else:
            fcntl.flock(timing, fcntl.LOCK_EX)  # waits while a timing test runs
            fcntl.flock(ordinary, fcntl.LOCK_SH)
            fcntl.flock(timing, fcntl.LOCK_UN)
        yield


ROOMS = ("timing.lock", "ordinary.lock")
TIMING_SLOTS = 2  # timing tests at once; one marked timing(alone=True) takes them all


@contextlib.contextmanager
def _timing_slot(run_dir: Path, worker: str, *, every: bool) -> Iterator[None]:
    """One of TIMING_SLOTS slots, taken before the timing room (so a test waiting for a slot keeps no
    ordinary test out): a free one if there is, else the worker's own, waited for; or, for a test whose
    pacing allows no neighbour at all, every slot, in order (so two such tests cannot deadlock)."""
    with contextlib.ExitStack() as held:
        slots = [
            held.enter_context((run_dir / f"timing-slot-{i}.lock").open("a")) for i in range(TIMING_SLOTS)
        ]
        if every:
            for slot in slots:
                fcntl.flock(slot, fcntl.LOCK_EX)
            yield
            return
        for slot in slots:
            with contextlib.suppress(BlockingIOError):
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
        else:
            fcntl.flock(slots[int(worker.removeprefix("gw")) % TIMING_SLOTS], fcntl.LOCK_EX)
        yield


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The last word of the main process (the xdist controller, once its workers are gone)."""
    if hasattr(session.config, "workerinput"):
        return  # a worker: its session fixture above did the check, and reported as a test error
    leftovers = running_processes()
    if not leftovers:
        return
    names = [describe(p) for p in leftovers]
    stop_processes(leftovers)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "processes still running at the end of the tests (now killed)", red=True)
        for name in names:
            reporter.write_line(f"  {name}", red=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def fake_process() -> Iterator[FakeAPI]:
    # Time is compressed: a 1-second quota window and short batch phases keep the suite fast.
    with FakeAPI(
        "--window", "1", "--batch-pending", "0.2", "--batch-running", "0.3", "--bad-key", "bad-key"
    ) as api:
        yield api


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
