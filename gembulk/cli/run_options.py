"""`gembulk run`'s options as typed, checked and resolved into RunOptions (no Typer here: testable alone)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gembulk.errors import UsageError
from gembulk.settings import (
    DEFAULT_BATCH_MAX_ROWS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    DEFAULT_ORDER_BUFFER,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_POLL_MAX_INTERVAL,
    DEFAULT_TIMEOUT,
    NO_API_KEY,
    BatchMode,
    BatchOptions,
    ContextCache,
    Fallback,
    GenerationSettings,
    ProgressMode,
    RunOptions,
    api_key_of,
    check_positive,
    parse_size,
    resolve_base_url,
)
from gembulk.shard import Shard


@dataclass(frozen=True)
class RunArgs:
    """The options of `gembulk run` as the command line gave them; the defaults are the command's own."""

    input: str
    output: str = "-"
    template: str | None = None
    template_file: str | None = None
    prompt_column: str | None = None
    id_column: str | None = None
    input_format: str | None = None
    delimiter: str | None = None
    output_format: str | None = None
    keep_order: bool = False
    order_buffer: int = DEFAULT_ORDER_BUFFER
    model: list[str] | None = None
    system: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    json_schema: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    rpm: float | None = None
    tpm: float | None = None
    max_attempts: int = 6
    max_retry_time: float = 600.0
    timeout: float = DEFAULT_TIMEOUT
    api_key: str | None = None
    api_key_file: str | None = None
    base_url: str | None = None
    progress: ProgressMode = ProgressMode.AUTO
    quiet: bool = False
    dry_run: bool = False
    overwrite: bool = False
    batch: bool = False
    detach: bool = False
    fallback: Fallback = Fallback.NONE
    keep_files: bool = False
    batch_max_rows: int = DEFAULT_BATCH_MAX_ROWS
    batch_max_bytes: str = "1.9GB"
    batch_name: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    poll_max_interval: float = DEFAULT_POLL_MAX_INTERVAL
    cache: str | None = None
    shard: str | None = None
    max_cost: float | None = None
    prices: str | None = None
    attach: list[str] | None = None
    inline_limit: str = "14MiB"
    downloads: int | None = None
    attach_root: str | None = None
    allow_private_urls: bool = False
    max_download: str | None = None
    context: list[str] | None = None
    context_text: str | None = None
    context_cache: ContextCache = ContextCache.AUTO
    debug: bool = False


def run_options(args: RunArgs, env: Mapping[str, str] = os.environ) -> RunOptions:
    """Check the options (UsageError names the first one that is wrong) and resolve them into RunOptions."""
    batch = _batch_options(args)
    for flag, value in (
        ("--concurrency", args.concurrency),
        ("--rpm", args.rpm),
        ("--tpm", args.tpm),
        ("--max-attempts", args.max_attempts),
        ("--timeout", args.timeout),
        ("--max-cost", args.max_cost),
        ("--downloads", args.downloads),
        ("--order-buffer", args.order_buffer),
    ):
        check_positive(flag, value)
    if args.order_buffer != DEFAULT_ORDER_BUFFER and not args.keep_order:
        raise UsageError("--order-buffer works only with --keep-order")
    models = tuple(dict.fromkeys(args.model or [DEFAULT_MODEL]))  # repeated -m: duplicates dropped, in order
    check_request_settings(models, args.temperature, args.max_output_tokens)
    context_files = _context_files(args)
    # Imported once the options are checked: a usage error pays neither asyncio nor tenacity (~30 ms).
    from gembulk.retry import RetryPolicy
    from gembulk.scheduler import Limits

    options = RunOptions(
        cache_path=args.cache,
        shard=Shard.parse(args.shard) if args.shard is not None else None,
        max_cost=args.max_cost,
        prices_path=args.prices,
        input=args.input,
        output=args.output,
        input_format=args.input_format,
        delimiter=_delimiter(args.delimiter),
        output_format=args.output_format,
        keep_order=args.keep_order,
        order_buffer=args.order_buffer,
        template=args.template,
        template_file=args.template_file,
        prompt_column=args.prompt_column,
        id_column=args.id_column,
        model=models[0],
        fanout=models if len(models) > 1 else (),
        generation=GenerationSettings(
            system=args.system, temperature=args.temperature, max_output_tokens=args.max_output_tokens
        ),
        json_schema_path=args.json_schema,
        limits=Limits(concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm),
        retry=RetryPolicy(max_attempts=args.max_attempts, max_time=args.max_retry_time),
        timeout=args.timeout,
        api_key=api_key_of(args.api_key, args.api_key_file, env),
        base_url=resolve_base_url(args.base_url, env),
        progress=args.progress,
        quiet=args.quiet,
        dry_run=args.dry_run,
        overwrite=args.overwrite,
        batch=batch,
        attach=tuple(dict.fromkeys(args.attach or ())),
        inline_limit=parse_size("--inline-limit", args.inline_limit, allow_zero=True),
        downloads=args.downloads or args.concurrency,
        attach_root=args.attach_root,
        allow_private_urls=args.allow_private_urls,
        max_download=parse_size("--max-download", args.max_download)
        if args.max_download is not None
        else None,
        context_files=context_files,
        context_text=args.context_text,
        context_cache=args.context_cache,
    )
    if not options.dry_run and not options.api_key:
        raise UsageError(NO_API_KEY)  # here, before the run machinery and the SDK are imported
    return options


def _context_files(args: RunArgs) -> tuple[str, ...]:
    """--context files in order (a file named twice is sent once); stdin is refused: the rows may be on it,
    and a batch collected later could not read it again."""
    files = tuple(dict.fromkeys(args.context or ()))
    if "-" in files:
        raise UsageError("--context -: stdin cannot be shared context; save it to a file and name that")
    if args.context_text is not None and not args.context_text.strip():
        raise UsageError("--context-text is empty")
    if args.context_cache is not ContextCache.AUTO and not (files or args.context_text):
        raise UsageError("--context-cache works only with --context or --context-text")
    return files


_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def _delimiter(given: str | None) -> str | None:
    """--delimiter: one character, or a name (tab, \\t, comma, semicolon, pipe, space)."""
    if given is None:
        return None
    delimiter = _DELIMITER_NAMES.get(given.lower(), given)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise UsageError(
            f"--delimiter {given!r}: give one character other than a quote or a line break "
            "(or tab, comma, semicolon, pipe, space)"
        )
    return delimiter


def _batch_options(args: RunArgs) -> BatchOptions | None:
    """The Batch API options with --batch; without it, any batch-only option is a usage error."""
    if not args.batch:
        for flag, used in (
            ("--detach", args.detach),
            ("--fallback", args.fallback is not Fallback.NONE),
            ("--keep-files", args.keep_files),
            ("--batch-name", args.batch_name is not None),
        ):
            if used:
                raise UsageError(f"{flag} works only with --batch")
        return None
    check_positive("--batch-max-rows", args.batch_max_rows)
    check_positive("--poll-interval", args.poll_interval)
    check_positive("--poll-max-interval", args.poll_max_interval)
    return BatchOptions(
        mode=BatchMode.DETACH if args.detach else BatchMode.RUN,
        max_rows=args.batch_max_rows,
        max_bytes=parse_size("--batch-max-bytes", args.batch_max_bytes),
        poll_interval=args.poll_interval,
        poll_max_interval=max(args.poll_interval, args.poll_max_interval),
        fallback_online=args.fallback is Fallback.ONLINE,
        keep_files=args.keep_files,
        display_name=args.batch_name,
    )


# The API's own range for temperature (a 400 "temperature must be in the range [0.0, 2.0]" otherwise).
TEMPERATURE_RANGE = (0.0, 2.0)
# What the SDK refuses in a model name (ValueError "invalid model parameter"), and what would break its URL.
_NOT_IN_MODEL_NAMES = ("..", "?", "&", "#", "%")


def check_request_settings(
    models: Sequence[str], temperature: float | None, max_output_tokens: int | None
) -> None:
    """The request settings the API would refuse for every row, refused here before anything is sent.

    What needs the model's limits (--max-output-tokens above its output limit, prompts over its input
    limit) is checked once they are known, in gembulk/modelinfo.py.
    """
    for model in models:
        if not _model_name_ok(model):
            raise UsageError(f"-m {model!r}: not a model name (such as {DEFAULT_MODEL})")
    low, high = TEMPERATURE_RANGE
    if temperature is not None and not low <= temperature <= high:  # NaN fails this too
        raise UsageError(f"--temperature must be between {low:g} and {high:g}, got {temperature:g}")
    if max_output_tokens is not None and max_output_tokens < 1:
        raise UsageError(f"--max-output-tokens must be at least 1, got {max_output_tokens}")


def _model_name_ok(model: str) -> bool:
    printable = model.isprintable() and not any(char.isspace() for char in model)
    return bool(model) and printable and not any(part in model for part in _NOT_IN_MODEL_NAMES)
