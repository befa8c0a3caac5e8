"""`batch wait|fetch`: collect the results of submitted jobs, through the whole run rebuilt from its state
file, or, for a bare job name, straight into -o FILE."""

from __future__ import annotations

from gembulk.errors import UsageError
from gembulk.observer import RunObserver
from gembulk.run import run_job
from gembulk.settings import BatchMode, CollectOptions, require_api_key
from gembulk.stats import RunResult


async def collect(target: str, output: str | None, how: CollectOptions, observer: RunObserver) -> RunResult:
    """`batch wait|fetch TARGET`: a state file (the whole run rebuilt), or a bare job name."""
    from gembulk.batch import state as batch_state
    from gembulk.batch.commands import Connection, fetch_bare
    from gembulk.batch.jobs import PollSettings

    state_file, job = batch_state.resolve_target(target, output)
    if state_file is not None:
        return await collect_batch(state_file, output, how, observer)
    assert job is not None
    if output is None or output == "-":
        raise UsageError(f"give -o FILE: {job} has no state file to say where its results go")
    batch = how.batch
    code, stats = await fetch_bare(
        job,
        output,
        Connection(api_key=require_api_key(how.api_key), base_url=how.base_url),
        observer,
        wait=batch.mode is BatchMode.WAIT,
        poll_settings=PollSettings(batch.poll_interval, batch.poll_max_interval, batch.wait_timeout),
        keep_files=bool(how.keep_files),
    )
    if not how.quiet:
        observer.message(f"done: {stats.ok} ok, {stats.failed} failed (records carry id = key only)")
    return RunResult(code, stats, 0.0)


async def collect_batch(
    state_file: str, output: str | None, how: CollectOptions, observer: RunObserver | None = None
) -> RunResult:
    """`batch wait|fetch STATEFILE`: the submitted run, rebuilt from its state file, through `_execute`."""
    from gembulk.batch import state as batch_state
    from gembulk.batch.flow import options_from_state

    require_api_key(how.api_key)
    state = batch_state.load(state_file)
    target = output or state.output
    if target == "-":
        raise UsageError("this batch was submitted for stdout; give -o FILE to fetch it")
    return await run_job(options_from_state(state, state_file, target, how), observer)
