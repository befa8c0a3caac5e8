"""How a run ends: its exit code, the first error of its task group, the hint that says how to finish it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gembulk.errors import ExitCode, GembulkError
from gembulk.executors import Executor
from gembulk.executors.online import OnlineExecutor
from gembulk.outputs import output_target
from gembulk.settings import RunOptions
from gembulk.stats import RunStats

if TYPE_CHECKING:
    from gembulk.executors.batch import BatchExecutor


def exit_code(stats: RunStats, interrupted: bool, error: GembulkError | None) -> ExitCode:
    if error is not None:
        return error.exit_code
    if interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.ROWS_FAILED if stats.failed else ExitCode.OK


def first_error(group: BaseExceptionGroup[GembulkError]) -> GembulkError:
    """The first GembulkError of a (possibly nested) task-group failure."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, GembulkError)
    return first


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map an exception escaping run_job to an exit code (GembulkError knows its own)."""
    return exc.exit_code if isinstance(exc, GembulkError) else ExitCode.USAGE


def as_batch(executor: Executor | None) -> BatchExecutor | None:
    """The executor if it is the batch one; an online run does not import the batch modules to find out."""
    if executor is None or isinstance(executor, OnlineExecutor):
        return None
    from gembulk.executors.batch import BatchExecutor

    return executor if isinstance(executor, BatchExecutor) else None


def resume_hint(options: RunOptions, stats: RunStats, executor: Executor | None = None) -> str:
    batch_executor = as_batch(executor)
    jobs = batch_executor.state.job_names if batch_executor is not None else []
    if jobs and batch_executor is not None and batch_executor.jobs_ended:
        return (
            "the batch jobs have ended; run the same command again to collect their results into "
            f"{options.output}"
        )
    resumable = output_target(options.output).resumable
    if jobs:
        listed = ", ".join(jobs)
        if not resumable:
            return (
                f"the batch jobs keep running on the service ({listed}); fetch their results later with "
                "`gembulk batch fetch JOB -o FILE`"
            )
        from gembulk.batch import state as batch_state

        state_file = batch_state.state_path(options.output)
        return (
            f"the batch jobs keep running on the service ({listed}); run the same command again to wait "
            f"for them, or later: gembulk batch fetch {state_file} -o {options.output}"
        )
    finished = stats.ok + stats.failed
    if not resumable:
        where = "stdout" if options.output == "-" else options.output
        return f"{finished} rows were written to {where}; use -o FILE to make a run resumable"
    return (
        f"{finished} rows were saved to {options.output}; run the same command again to finish "
        f"the remaining {stats.remaining} rows without paying for finished ones"
    )
