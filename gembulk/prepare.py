"""What is checked before the first request (input, template, schema, output, identity); the row passes."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gembulk import jobfile
from gembulk.attachments import AttachmentCheck, AttachSpec, check_columns
from gembulk.errors import InputError, StateFileError, UsageError
from gembulk.executors import RequestSource
from gembulk.inputs import InputSpec, ScanResult, open_input, scan_input, stage_input
from gembulk.jsonfiles import read_json
from gembulk.outputs import ExistingOutput, RecordKey, detect_output_format, load_existing
from gembulk.pricing import PriceTable, load_prices
from gembulk.prompts import Template, prompt_template
from gembulk.records import Attachment, PromptRequest
from gembulk.settings import NO_API_KEY, BatchMode, RunOptions, schema_summary
from gembulk.shard import Shard
from gembulk.stats import RunStats


@dataclass(frozen=True)
class Prepared:
    """Everything checked before the first request: nothing is sent until all of this succeeded."""

    spec: InputSpec
    scan: ScanResult
    template: Template
    schema: dict[str, Any] | None
    output_format: str
    existing: ExistingOutput | None
    identity: jobfile.JobIdentity
    spool: str | None  # temporary copy of stdin, deleted at the end
    prices: PriceTable
    total: int  # records this run is about: rows (of its --shard) times models
    attach: AttachSpec | None = None  # --attach columns, and the folder local paths are confined to


async def prepare(options: RunOptions) -> Prepared:
    if not options.dry_run and not options.api_key:
        raise UsageError(NO_API_KEY)
    if options.batch is not None and options.batch.mode is BatchMode.DETACH and options.output == "-":
        raise UsageError("--detach needs -o FILE: the batch state file is kept beside it")
    prices = load_prices(options.prices_path)
    _check_cost_options(options, prices)
    schema = _load_schema(options.json_schema_path)
    if schema is None:
        schema = options.generation.json_schema  # a run rebuilt from a batch state file
    if options.input == "-" and options.stdin_copy is not None and not os.path.isfile(options.stdin_copy):
        raise StateFileError(f"{options.stdin_copy}: the kept copy of the batch's stdin input is gone")
    # A batch run keeps a stdin or pipe input beside OUT for `batch wait|fetch`: spool it there to link it.
    beside = os.path.dirname(os.path.abspath(options.output)) if options.output != "-" else None
    staged = await stage_input(
        options.input,
        options.input_format,
        id_column=options.id_column,
        delimiter=options.delimiter,
        kept_copy=options.stdin_copy,
        spool_dir=beside if options.batch is not None else None,
    )
    spec, spool, fmt = staged.spec, staged.spool, staged.spec.format
    try:
        source = await open_input(spec)
        try:
            columns = source.columns
        finally:
            await source.aclose()
        template = prompt_template(
            options.template,
            options.template_file,
            options.prompt_column,
            columns,
            fmt,
            spec.display_name or spec.path,
        )
        scan = await scan_input(spec, template.fields)
        attach = None
        if options.attach:
            attach = _attach_spec(options, staged.stream)
            check_columns(attach, scan.columns, fmt, spec.name)
            await _check_attachments(spec, attach, options)
        output_format = detect_output_format(options.output, options.output_format)
        generation: dict[str, Any] = {
            "temperature": options.generation.temperature,
            "max_output_tokens": options.generation.max_output_tokens,
            "schema": schema_summary(schema),
        }
        if options.attach:  # only when used, so outputs written before --attach existed still match
            generation["attach"] = list(options.attach)
        identity = jobfile.JobIdentity(
            input=_input_identity(options, scan, staged.stream),
            template=template.source,
            model=",".join(options.models),
            system=options.generation.system,
            generation=json.dumps(generation, sort_keys=True),
            id_column=scan.id_column,
            shard=str(options.shard) if options.shard else None,
        )
        existing = await _existing_output(options, output_format, identity)
        rows = await _count_shard(spec, options.shard) if options.shard else scan.row_count
        total = rows * len(options.models)
    except BaseException:
        if spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool)
        raise
    return Prepared(
        spec, scan, template, schema, output_format, existing, identity, spool, prices, total, attach
    )


def _check_cost_options(options: RunOptions, prices: PriceTable) -> None:
    if options.max_cost is None:
        return
    if options.batch is not None:
        raise UsageError("--max-cost works with online runs; a batch is priced only once it has run")
    unpriced = [model for model in options.models if prices.price_for(model) is None]
    if unpriced:
        raise UsageError(
            f"--max-cost: no price is known for {', '.join(unpriced)}",
            hint="pass --prices FILE with its input and output prices (USD per million tokens)",
        )


def _attach_spec(options: RunOptions, stream: bool) -> AttachSpec:
    root = options.attach_root
    if root is not None and not os.path.isdir(root):
        raise UsageError(f"--attach-root {root}: no such directory")
    return AttachSpec.for_input(options.attach, None if stream else options.input, root)


async def _check_attachments(spec: InputSpec, attach: AttachSpec, options: RunOptions) -> None:
    """Every local attachment must be inside the root, exist and have a known type, and every URL be an
    http(s) one, before anything is sent."""
    check = AttachmentCheck(spec.name)
    source = await open_input(spec, check_unique_ids=False)
    try:
        async for row in source.rows():
            if options.shard is None or options.shard.owns(row.id):
                check.check(row, attach.of(row))
    finally:
        await source.aclose()
    check.raise_if_any()


async def _count_shard(spec: InputSpec, shard: Shard) -> int:
    count = 0
    source = await open_input(spec, check_unique_ids=False)
    try:
        async for row in source.rows():
            count += shard.owns(row.id)
    finally:
        await source.aclose()
    return count


def _load_schema(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    schema = read_json(path, "the JSON schema", InputError)
    if not isinstance(schema, dict):
        raise InputError(f"{path}: a JSON schema must be a JSON object")
    return schema


def _input_identity(options: RunOptions, scan: ScanResult, stream: bool) -> str:
    if stream:  # stdin or a pipe: what identifies it is its content
        return f"<stdin>:{scan.sha256}"
    return os.path.abspath(options.input)


async def _existing_output(
    options: RunOptions, output_format: str, identity: jobfile.JobIdentity
) -> ExistingOutput | None:
    if options.output == "-":
        return None
    output = options.output
    if options.input != "-" and os.path.exists(output) and os.path.samefile(output, options.input):
        raise UsageError(f"-o {output} is the input file; choose another output path")
    check_output_directory(output)
    if options.overwrite or not os.path.exists(output):
        return None
    jobfile.check_same_job(output, identity)
    return await load_existing(output, output_format)


def check_output_directory(output: str) -> None:
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise UsageError(f"-o {output}: directory {directory} does not exist")


def request_source(
    prepared: Prepared, options: RunOptions, done: frozenset[RecordKey], stats: RunStats
) -> RequestSource:
    """Fresh passes over the rows still to do; finished rows are counted as skipped on the first pass only."""
    passes = 0

    def source() -> AsyncIterator[PromptRequest]:
        nonlocal passes
        passes += 1
        return pending_requests(prepared, options, done, stats if passes == 1 else None)

    return source


async def pending_requests(
    prepared: Prepared, options: RunOptions, done: frozenset[RecordKey], stats: RunStats | None
) -> AsyncIterator[PromptRequest]:
    # _prepare's scan refused repeated ids already: this pass need not hold every id again.
    source = await open_input(prepared.spec, check_unique_ids=False)
    try:
        async for row in source.rows():
            if options.shard is not None and not options.shard.owns(row.id):
                continue
            prompt = None  # rendered only for a row that still has work: a resumed run skips most
            attachments: tuple[Attachment, ...] = ()
            for model in options.models:
                if (row.id, model) in done:
                    if stats is not None:
                        stats.skipped += 1
                    continue
                if prompt is None:
                    prompt = prepared.template.render(row.fields)
                    attachments = prepared.attach.of(row) if prepared.attach is not None else ()
                yield PromptRequest(row=row, prompt=prompt, model=model, attachments=attachments)
    finally:
        await source.aclose()
