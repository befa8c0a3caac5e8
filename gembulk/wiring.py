"""The stages of one run wired together: the client, the media stage, the executor (behind the cache), the
output opened when needed, and the recorder that writes and counts each outcome."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable

from gembulk.budget import Budget
from gembulk.client import GeminiClient
from gembulk.context.runtime import ContextRuntime
from gembulk.errors import OutputWriteError
from gembulk.executors import Emit, Executor
from gembulk.executors.online import OnlineExecutor
from gembulk.inputs import open_input
from gembulk.media import MediaResolver
from gembulk.observer import RunObserver
from gembulk.outputs import (
    CompactionPlan,
    Resume,
    RunOutput,
    compact,
    csv_columns,
    encoder_for,
    remove_legacy_sidecar,
)
from gembulk.outputs.compression import never_empty
from gembulk.outputs.resume import record_key
from gembulk.outputs.target import temp_prefix
from gembulk.prepare import Prepared
from gembulk.records import Outcome, PromptRequest, build_record
from gembulk.retry import RetryEvent
from gembulk.scheduler import Scheduler
from gembulk.settings import RunOptions
from gembulk.stats import RunStats

# The batch, cache and dry-run modules (and sqlite3) are imported where they are used: an online run
# never needs them, and a command line run pays for every module it imports (about 20 ms for these).


def output_for(options: RunOptions, prepared: Prepared) -> RunOutput:
    """OUT as this run writes it, opened at the first record: a run that stops before it (bad input found
    late, a refused model, `batch fetch` before the jobs are done) leaves OUT as it was. --keep-order
    streams records in order online; a batch run (and a Parquet OUT) is put in order at the end."""
    encoder = encoder_for(
        prepared.records_format,
        prepared.scan.columns,
        with_parsed=prepared.schema is not None,
        id_column=prepared.scan.id_column,
        compression=prepared.compression,
    )
    streamed = options.keep_order and options.batch is None and prepared.output_format != "parquet"
    seed = None
    records = prepared.records_target.path
    if prepared.output_format == "parquet" and os.path.exists(options.output) and not os.path.exists(records):
        from gembulk.outputs.parquet import write_records

        seed = functools.partial(write_records, options.output)
    return RunOutput(
        prepared.records_target,
        encoder,
        prepared.existing,
        overwrite=options.overwrite,
        keep_order=options.order_buffer if streamed else 0,
        seed=seed,
    )


def client_for(options: RunOptions, prepared: Prepared) -> GeminiClient:
    return GeminiClient(
        api_key=options.api_key or "",
        base_url=options.base_url,
        max_connections=options.limits.concurrency,
        timeout=options.timeout,
        settings=prepared.settings,
        paced=options.limits.rpm is not None or options.limits.tpm is not None,
    )


@contextlib.asynccontextmanager
async def media_for(
    options: RunOptions, prepared: Prepared, client: GeminiClient, observer: RunObserver
) -> AsyncIterator[MediaResolver | None]:
    """The media stage of a run with --attach. Online runs delete their uploads when they end; a batch
    run's uploads are referenced by its jobs, so the batch executor deletes them after the fetch."""
    if prepared.attach is None:
        yield None
        return
    batch = options.batch is not None
    resolver = MediaResolver(
        client,
        options.retry,
        inline_limit=0 if batch else options.inline_limit,  # batch lines can only reference files
        downloads=options.downloads,
        timeout=options.timeout,
        **_scratch(options, prepared),
        max_download=options.download_limit,
        allow_private_urls=options.allow_private_urls,
    )
    async with resolver:
        try:
            yield resolver
        finally:
            if not batch:
                await resolver.delete_uploads(observer.message)


def _scratch(options: RunOptions, prepared: Prepared) -> dict[str, str]:
    """Where the media stage spools large downloads: beside a file OUT, named as its leftovers."""
    if not prepared.target.resumable:
        return {}
    return {"scratch_dir": prepared.target.directory, "scratch_prefix": temp_prefix(options.output)}


def make_executor(
    options: RunOptions,
    prepared: Prepared,
    client: GeminiClient,
    stats: RunStats,
    observer: RunObserver,
    media: MediaResolver | None = None,
    context: ContextRuntime | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Executor:
    """The executor behind the seam: online, or the Batch API with `--batch` (and batch wait|fetch).
    `on_stop` is told when the online executor stops dispatching (--keep-order's wait must end)."""

    def online(budget: Budget | None = None) -> OnlineExecutor:
        scheduler = Scheduler(options.limits, stats)
        return OnlineExecutor(
            client, scheduler, options.retry, stats, budget, media=media, context=context, on_stop=on_stop
        )

    if options.batch is None and options.max_cost is not None:
        budget = Budget(
            options.max_cost,
            prepared.prices,
            system=options.generation.system,
            max_output_tokens=options.generation.max_output_tokens,
            shared=context.shared_usage if context is not None else None,
        )
        return online(budget)

    if options.batch is None:
        return online()

    from gembulk.batch.flow import batch_state_for
    from gembulk.batch.jobs import BatchService
    from gembulk.executors.batch import BatchExecutor

    def count_retry(event: RetryEvent) -> None:
        stats.retries += 1

    state, state_file = batch_state_for(options, prepared, observer)
    return BatchExecutor(
        service=BatchService(client, options.retry, on_retry=count_retry),
        options=options.batch,
        state=state,
        state_file=state_file,
        settings=client.settings,
        observer=observer,
        online=online,
        stdin_spool=prepared.spool,
        media=media,
        context=context,
    )


def with_cache(
    executor: Executor, options: RunOptions, client: GeminiClient, stats: RunStats, prepared: Prepared
) -> Executor:
    """With --cache, answers already paid for (by any run, online or batch) are served locally."""
    if options.cache_path is None:
        return executor
    from gembulk.cache import ResponseCache
    from gembulk.executors.cached import CachedExecutor

    context = prepared.context.sha256 if prepared.context is not None else None
    return CachedExecutor(executor, ResponseCache(options.cache_path), client.settings, stats, context)


async def finalize_output(
    options: RunOptions, prepared: Prepared, resume: Resume, output: RunOutput, observer: RunObserver
) -> None:
    """A completed run on a file: one record per (id, model) (in input order with --keep-order; a
    compressed OUT as one stream; a Parquet OUT converted from its records), the job file of earlier
    versions gone."""
    path = prepared.records_target.path
    resume.release()
    sort = options.keep_order and not output.in_order
    compressed = prepared.compression is not None and output.written > 0
    try:
        if resume.needs_compaction or sort or compressed:
            plan = CompactionPlan(boundary=output.boundary, current=resume.current)
            order = _keys_in_input_order(prepared, options) if sort else None
            await compact(
                path,
                prepared.records_format,
                plan,
                compression=prepared.compression,
                order=order,
                rewrite=compressed,
            )
        if prepared.compression is not None:
            await asyncio.to_thread(never_empty, path, prepared.compression)
        if prepared.output_format == "parquet":
            unchanged = output.seeded and not (output.written or resume.needs_compaction or sort)
            await _to_parquet(options, prepared, unchanged)
    except OSError as exc:
        raise OutputWriteError(options.output, exc) from exc
    remove_legacy_sidecar(options.output)
    if resume.left_alone:
        observer.message(
            f"{options.output}: {resume.left_alone} records are not part of this job (rows no longer in the "
            "input, another model or shard); left as they are"
        )


async def _keys_in_input_order(prepared: Prepared, options: RunOptions) -> AsyncIterator[int]:
    """The record key of each (row, model) of the job in input order: row, then model (--keep-order)."""
    source = await open_input(prepared.spec, check_unique_ids=False)
    try:
        async for row in source.rows():
            if options.shard is None or options.shard.owns(row.id):
                for model in options.models:
                    yield record_key(row.id, model)
    finally:
        await source.aclose()


async def _to_parquet(options: RunOptions, prepared: Prepared, unchanged: bool) -> None:
    """The records (JSONL beside OUT) converted into OUT, then deleted: OUT holds them all durably.
    `unchanged`: they are a copy of OUT's, nothing to convert."""
    from gembulk.outputs.parquet import convert

    records = prepared.records_target.path
    columns = csv_columns(prepared.scan.columns, prepared.schema is not None, prepared.scan.id_column)
    if not unchanged:
        await asyncio.to_thread(convert, records, options.output, columns)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(records)


def recorder(output: RunOutput, prepared: Prepared, stats: RunStats, default_mode: str | None) -> Emit:
    """Writes each outcome's record to OUT and counts it: ok or failed, tokens and cost."""
    with_parsed = prepared.schema is not None
    id_column = prepared.scan.id_column

    async def record(request: PromptRequest, outcome: Outcome) -> None:
        mode = outcome.extra.get("mode", default_mode)
        built = build_record(
            request.row,
            request.model,
            outcome,
            with_parsed=with_parsed,
            mode=mode,
            fingerprint=request.fingerprint,
            id_column=id_column,
        )
        await output.write(built, request.seq)
        stats.add_usage(outcome.usage)
        if not outcome.extra.get("cached"):  # an answer from the cache costs nothing
            batch = mode == "batch"
            cost = prepared.prices.cost(request.model, outcome.usage, batch=batch)
            if cost is None:
                stats.cost_known = False
            else:
                stats.cost_usd += cost
                stats.cache_saving_usd += prepared.prices.cache_saving(
                    request.model, outcome.usage, batch=batch
                )
        if outcome.error is None:
            stats.ok += 1
        else:
            stats.add_failure(outcome.error.status)

    return record
