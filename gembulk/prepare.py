"""What is checked before the first request (input, template, schema, output); the request passes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gembulk import stdstreams
from gembulk.attachments import AttachmentCheck, AttachSpec, check_columns, identity
from gembulk.context import SharedContext, load_context
from gembulk.errors import InputError, StateFileError, UsageError
from gembulk.executors import Emit, RequestSource
from gembulk.inputs import (
    PER_ROW_FIELDS,
    InputSpec,
    ScanResult,
    StagedInput,
    open_input,
    scan_input,
    stage_input,
)
from gembulk.jsonfiles import read_json
from gembulk.outputs import (
    ExistingOutput,
    OutputKind,
    OutputTarget,
    Resume,
    check_output,
    csv_columns,
    detect_output_format,
    output_target,
)
from gembulk.outputs.layout import existing_output, output_layout
from gembulk.outputs.target import temp_prefix
from gembulk.pricing import PriceTable, load_prices
from gembulk.prompts import Template, prompt_template
from gembulk.records import Attachment, InputRow, Outcome, PromptRequest, RowError
from gembulk.requestkey import RequestDigests, fingerprint_of
from gembulk.settings import NO_API_KEY, BatchMode, GenerationSettings, RunOptions
from gembulk.shard import Shard
from gembulk.stats import RunStats

NO_PLACEHOLDER = "the template has no {placeholder}: every row gets the same prompt"
MISSING_VALUE = "MISSING_VALUE"  # a row without a value for a placeholder: failed, never sent
EMPTY_PROMPT = "EMPTY_PROMPT"  # a row whose prompt is empty and has no attachment: failed, never sent


@dataclass(frozen=True)
class Prepared:
    """Everything checked before the first request: nothing is sent until all of this succeeded."""

    spec: InputSpec
    scan: ScanResult
    template: Template
    schema: dict[str, Any] | None
    output_format: str
    target: OutputTarget  # what -o names: stdout, a stream, or a file (resumed, locked)
    existing: ExistingOutput | None  # what OUT holds already (None: nothing, or --overwrite)
    settings: GenerationSettings  # the run's generation settings with the schema: every request's
    spool: str | None  # temporary copy of stdin or of a pipe, deleted at the end
    prices: PriceTable
    total: int  # records this run is about: rows (of its --shard) times models
    attach: AttachSpec | None = None  # --attach columns, and the folder local paths are confined to
    warnings: tuple[str, ...] = ()  # said once at the start (and by --dry-run)
    context: SharedContext | None = None  # --context / --context-text, read and checked
    compression: str | None = None  # gzip or zstd: OUT's name ends in .gz or .zst
    # Where the records are appended: OUT itself, or for a Parquet OUT the JSONL beside it (converted at
    # the end of the run that completes).
    records: OutputTarget | None = None

    @property
    def records_target(self) -> OutputTarget:
        return self.records or self.target

    @property
    def records_format(self) -> str:
        return "jsonl" if self.output_format == "parquet" else self.output_format


async def prepare(options: RunOptions) -> Prepared:
    target = output_target(options.output)
    _check_standard_streams(options, target)
    if not options.dry_run and not options.api_key:
        raise UsageError(NO_API_KEY)
    if options.batch is not None and options.batch.mode is BatchMode.DETACH and not target.resumable:
        raise UsageError("--detach needs -o FILE: the batch state file is kept beside it")
    check_output(target)
    prices = load_prices(options.prices_path)
    _check_cost_options(options, prices)
    schema = _load_schema(options.json_schema_path)
    if schema is None:
        schema = options.generation.json_schema  # a run rebuilt from a batch state file
    settings = replace(options.generation, json_schema=schema) if schema is not None else options.generation
    staged = await _stage_input(options, target)
    spec, spool, fmt = staged.spec, staged.spool, staged.spec.format
    try:
        source = await open_input(spec)
        try:
            columns = source.columns
        finally:
            await source.aclose()
        name = spec.display_name or spec.path
        # A JSON(L) row need not have the first row's fields: the template is checked against every row's.
        template = prompt_template(
            options.template,
            options.template_file,
            options.prompt_column,
            columns,
            fmt,
            name,
            check=fmt not in PER_ROW_FIELDS,
        )
        scan = await scan_input(spec, template.fields)
        if fmt in PER_ROW_FIELDS:
            template.check_columns([*columns, *sorted(scan.fields_seen - set(columns))], name)
        attach = None
        if options.attach:
            attach = _attach_spec(options, staged.stream)
            check_columns(attach, scan.columns, fmt, spec.name)
            await _check_attachments(spec, attach, options)
        output_format, compression, records, existing = await _output_plan(options, target, scan, schema)
        context = _load_context(options)
        rows = await _count_shard(spec, options.shard) if options.shard else scan.row_count
        total = rows * len(options.models)
    except BaseException:
        if spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool)
        raise
    warnings = () if template.fields else (NO_PLACEHOLDER,)
    return Prepared(
        spec,
        scan,
        template,
        schema,
        output_format,
        target,
        existing,
        settings,
        spool,
        prices,
        total,
        attach,
        warnings,
        context,
        compression,
        records,
    )


async def _output_plan(
    options: RunOptions, target: OutputTarget, scan: ScanResult, schema: dict[str, Any] | None
) -> tuple[str, str | None, OutputTarget | None, ExistingOutput | None]:
    """OUT's format, its compression, the file records are appended to (for Parquet, the JSONL beside
    it) and what OUT holds already; an output that cannot be written so is refused here (exit 2)."""
    output_format = detect_output_format(options.output, options.output_format)
    compression, records = output_layout(
        options.output,
        target,
        output_format,
        input_path=options.input,
        keep_order=options.keep_order,
        batch=options.batch is not None,
    )
    existing = None
    if target.resumable and not options.overwrite:
        columns = csv_columns(scan.columns, schema is not None, scan.id_column)
        existing = await existing_output(options.output, records, output_format, compression, columns)
    return output_format, compression, records, existing


def _load_context(options: RunOptions) -> SharedContext | None:
    if not options.has_context:
        return None
    # Media up to half the inline limit are held to go inline; the row's own attachments need the rest.
    return load_context(
        options.context_files,
        options.context_text,
        options.generation.system,
        hold_below=options.inline_limit // 2,
    )


def _check_standard_streams(options: RunOptions, target: OutputTarget) -> None:
    """A closed stdin cannot give rows, and records for a closed stdout would go nowhere."""
    closed = stdstreams.closed_at_start()
    if options.input == "-" and options.stdin_copy is None and stdstreams.STDIN in closed:
        raise UsageError("stdin is closed: give INPUT as a file, or pipe the rows in")
    if target.kind is OutputKind.STDOUT and stdstreams.STDOUT in closed and not options.dry_run:
        raise UsageError("stdout is closed: give -o FILE")


async def _stage_input(options: RunOptions, target: OutputTarget) -> StagedInput:
    """The input to read, and the spooled copy of stdin or of a pipe it may be (deleted by the caller)."""
    if options.input == "-" and options.stdin_copy is not None and not os.path.isfile(options.stdin_copy):
        raise StateFileError(f"{options.stdin_copy}: the kept copy of the batch's stdin input is gone")
    # Beside OUT, named so that the next run on OUT removes it if this one is killed (a batch run
    # also links it there as the copy `batch wait|fetch` reads); a dry run writes nothing beside it.
    beside = target.directory if target.resumable and not options.dry_run else None
    try:
        return await stage_input(
            options.input,
            options.input_format,
            id_column=options.id_column,
            delimiter=options.delimiter,
            kept_copy=options.stdin_copy,
            spool_dir=beside,
            spool_prefix=temp_prefix(options.output) if beside else "gembulk-stdin-",
        )
    except OSError as exc:
        what, where = "stdin" if options.input == "-" else options.input, beside or "the temporary folder"
        raise UsageError(f"cannot copy {what} to {where}: {exc.strerror}") from None


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


# Why a request must not be sent (PROMPT_TOO_LONG), or None when it may. A pure function of the request:
# every pass over the requests (the batch executor takes several, across processes) must agree.
RequestCheck = Callable[[PromptRequest], RowError | None]


class Gate(Protocol):
    """Whether the request numbered `seq` may be handed out now (--keep-order's buffer has room)."""

    def admits(self, seq: int) -> bool: ...

    async def wait(self, seq: int) -> None: ...


def request_source(
    prepared: Prepared,
    options: RunOptions,
    resume: Resume,
    stats: RunStats,
    unsent: Emit | None = None,
    check: RequestCheck | None = None,
    gate: Gate | None = None,
) -> RequestSource:
    """Fresh passes over the requests still to send. The first pass counts the rows already done as
    skipped and hands the requests that cannot be sent (MISSING_VALUE, EMPTY_PROMPT, and whatever
    `check` refuses) to `unsent`; later passes leave both out. No executor ever sees those. Every pass
    numbers the requests alike (`seq`), and with a `gate` waits before handing one out until it admits it."""
    passes = 0

    def source() -> AsyncIterator[PromptRequest]:
        nonlocal passes
        passes += 1
        first = passes == 1
        return pending_requests(
            prepared, options, resume, stats if first else None, unsent if first else None, check, gate
        )

    return source


def unsendable(
    template: Template, row: InputRow, prompt: str | None, attachments: Sequence[Attachment]
) -> RowError | None:
    """Why a row is not sent (its record fails with this), or None; `prompt` is None until rendered."""
    if prompt is None:
        missing = template.missing(row.fields)
        if not missing:
            return None
        names = ", ".join(missing)
        return RowError(MISSING_VALUE, f"no value for {names} in this row (the field is null or absent)")
    if not attachments and not prompt.strip():
        return RowError(EMPTY_PROMPT, "the prompt is empty for this row, and it has no attachment")
    return None


def _identities(attachments: Sequence[Attachment]) -> list[str]:
    return [identity(a) for a in attachments]


async def pending_requests(
    prepared: Prepared,
    options: RunOptions,
    resume: Resume,
    stats: RunStats | None,
    unsent: Emit | None = None,
    check: RequestCheck | None = None,
    gate: Gate | None = None,
) -> AsyncIterator[PromptRequest]:
    """The requests to send, in input order: each row on each model, with the digest of its canonical
    request; a request whose fingerprint a success record of its (id, model) carries is skipped. Each
    request that gets a record in this run (sent, or failed unsent) is numbered in that order."""
    counting = stats is not None
    context = prepared.context.sha256 if prepared.context is not None else None
    digests = {model: RequestDigests(prepared.settings, model, context) for model in options.models}
    template = prepared.template
    seq = -1
    # _prepare's scan refused repeated ids already: this pass need not hold every id again.
    source = await open_input(prepared.spec, check_unique_ids=False)
    try:
        async for row in source.rows():
            if options.shard is not None and not options.shard.owns(row.id):
                continue
            attachments = prepared.attach.of(row) if prepared.attach is not None else ()
            problem = unsendable(template, row, None, attachments)
            prompt = "" if problem is not None else template.render(row.fields)
            problem = problem or unsendable(template, row, prompt, attachments)
            if problem is not None:
                for model in options.models:
                    seq += 1
                    if gate is not None and not gate.admits(seq):
                        await gate.wait(seq)
                    resume.sending(row.id, model, counting=counting)
                    if unsent is not None:
                        failed = PromptRequest(row, prompt, model, seq=seq)
                        await unsent(failed, Outcome(text=None, error=problem))
                continue
            identities: Sequence[str] = ()
            if attachments:  # a local file is identified by its content: hashed off the event loop
                identities = await asyncio.to_thread(_identities, attachments)
            for model in options.models:
                key = digests[model].digest(prompt, identities)
                if resume.done(row.id, model, fingerprint_of(key), counting=counting):
                    if stats is not None:
                        stats.skipped += 1
                    continue
                seq += 1
                if gate is not None and not gate.admits(seq):
                    await gate.wait(seq)
                resume.sending(row.id, model, counting=counting)
                request = PromptRequest(row, prompt, model, attachments, request_key=key, seq=seq)
                refused = check(request) if check is not None else None
                if refused is None:
                    yield request
                elif unsent is not None:
                    await unsent(request, Outcome(text=None, error=refused))
    finally:
        await source.aclose()
