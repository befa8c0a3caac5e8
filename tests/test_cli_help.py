"""The command line's help, version and usage errors: quick (no SDK imported), grouped, plain, with examples;
and `run`'s options checked into RunOptions without Typer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields

import pytest
import typer

from gembulk.cli import app
from gembulk.cli.run_options import RunArgs, run_options
from gembulk.errors import UsageError
from gembulk.settings import DEFAULT_MODEL, BatchMode, ContextCache, Fallback

# Runs the command line in a fresh interpreter and reports its exit code and which heavy modules it loaded.
_PROBE = """
import json, sys
sys.argv = ["gembulk", *json.loads(sys.argv[1])]
from gembulk.cli import main
try:
    main()
    code = 0
except SystemExit as done:
    code = done.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "aiohttp" or m.startswith("google.genai"))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def probe(*args: str, key: str | None = "k") -> tuple[int, list[str], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["COLUMNS"] = "80"
    if key is not None:
        env["GEMINI_API_KEY"] = key
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], report["heavy"], done.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--version",), 0),
        (("--help",), 0),
        (("run", "--help"), 0),
        (("batch", "--help"), 0),
        (("batch", "fetch", "--help"), 0),
        (("run",), 2),  # no INPUT
        (("run", "in.csv", "--no-such-option"), 2),
        (("run", "in.csv", "--rpm", "-1"), 2),
        (("run", "in.csv", "--detach"), 2),
        (("run", "in.csv", "--batch", "--batch-max-bytes", "lots"), 2),
        (("run", "in.csv", "--shard", "3/2"), 2),
        (("batch", "list", "--limit", "0"), 2),
        (("run", "in.csv", "--context", "-"), 2),
        (("run", "in.csv", "--context-cache", "on"), 2),
        (("batch", "wait", "out.jsonl", "--timeout", "-1"), 2),
    ],
)
def test_help_version_and_usage_errors_never_import_the_sdk(args: tuple[str, ...], code: int) -> None:
    exit_code, heavy, _ = probe(*args)
    assert (exit_code, heavy) == (code, [])


def test_a_missing_api_key_is_refused_before_the_sdk_is_imported() -> None:
    exit_code, heavy, _ = probe("run", "in.csv", key=None)
    assert (exit_code, heavy) == (2, [])
    exit_code, heavy, _ = probe("run", "missing.csv", "--dry-run", key=None)  # a dry run needs no key
    assert exit_code == 2  # it got as far as reading the input, which is missing


def test_run_help_groups_the_options_in_plain_lines_that_fit_80_columns() -> None:
    _, _, text = probe("run", "--help")
    assert "\x1b[" not in text and "─" not in text  # plain text: no colours, no boxes
    headings = [line for line in text.splitlines() if line and not line[0].isspace() and line.endswith(":")]
    assert headings == [
        "Arguments:",
        "Input:",
        "Prompt:",
        "Model and request:",
        "Speed and quota:",
        "Output:",
        "Batch API:",
        "Media:",
        "Shared context:",
        "Cost:",
        "Cache and sharding:",
        "Connection and debug:",
        "Options:",
    ]
    assert max(len(line) for line in text.splitlines()) <= 80
    examples = text.split("Examples:")[1]
    assert examples.count("gembulk run ") == 7  # (one more names `gembulk batch fetch` in a comment)


def test_root_and_batch_help_end_with_examples() -> None:
    _, _, root = probe("--help")
    example_lines = [line for line in root.split("Examples:")[1].splitlines() if "gembulk run " in line]
    assert len(example_lines) == 3 and "gembulk run --help" in example_lines[2]  # two, then a pointer
    _, _, batch = probe("batch", "--help")
    assert batch.split("Examples:")[1].count("gembulk batch ") >= 3


def test_the_command_declares_the_defaults_run_args_has() -> None:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    declared = {param.name: param.default for param in command.params}
    assert set(declared) == {field.name for field in fields(RunArgs)}
    for field in fields(RunArgs):
        if field.name != "input":
            assert declared[field.name] == field.default, field.name


def test_run_options_resolves_what_the_command_line_gave() -> None:
    options = run_options(
        RunArgs(input="in.csv", model=["a", "b", "a"], concurrency=7, system="s", attach=["p", "p", "q"]),
        env={"GOOGLE_API_KEY": " key ", "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:1"},
    )
    assert (options.model, options.fanout) == ("a", ("a", "b"))
    assert options.api_key == "key" and options.base_url == "http://127.0.0.1:1"
    assert options.downloads == 7 and options.limits.concurrency == 7
    assert options.generation.system == "s" and options.attach == ("p", "q")
    assert options.batch is None and options.inline_limit == 14 * 2**20
    assert run_options(RunArgs(input="-"), env={"GEMINI_API_KEY": "k"}).model == DEFAULT_MODEL


def test_run_options_keeps_the_shared_context_in_order_once() -> None:
    args = RunArgs(
        input="in.csv", context=["b.md", "a.pdf", "b.md"], context_text="t", context_cache=ContextCache.ON
    )
    options = run_options(args, env={"GEMINI_API_KEY": "k"})
    assert options.context_files == ("b.md", "a.pdf") and options.context_text == "t"
    assert options.context_cache is ContextCache.ON and options.has_context
    assert not run_options(RunArgs(input="in.csv"), env={"GEMINI_API_KEY": "k"}).has_context


def test_run_options_builds_the_batch_options() -> None:
    args = RunArgs(
        input="in.csv",
        batch=True,
        detach=True,
        fallback=Fallback.ONLINE,
        batch_max_bytes="500MB",
        poll_interval=5.0,
        poll_max_interval=1.0,
    )
    batch = run_options(args, env={"GEMINI_API_KEY": "k"}).batch
    assert batch is not None and batch.mode is BatchMode.DETACH and batch.fallback_online
    assert batch.max_bytes == 500_000_000 and batch.poll_max_interval == 5.0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"keep_files": True}, "--keep-files works only with --batch"),
        ({"fallback": Fallback.ONLINE}, "--fallback works only with --batch"),
        ({"batch_name": "x"}, "--batch-name works only with --batch"),
        ({"batch": True, "batch_max_rows": 0}, "--batch-max-rows must be a positive number"),
        ({"concurrency": 0}, "--concurrency must be a positive number"),
        ({"downloads": -2}, "--downloads must be a positive number"),
        ({"inline_limit": "a lot"}, "--inline-limit: expected a size"),
        ({"base_url": "example.com"}, "--base-url must start with http:// or https://"),
        ({"context": ["a.md", "-"]}, "--context -: stdin cannot be shared context"),
        ({"context_text": "  "}, "--context-text is empty"),
        ({"context_cache": ContextCache.OFF}, "--context-cache works only with --context"),
    ],
)
def test_run_options_refuses_what_cannot_run(given: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_options(RunArgs(input="in.csv", **given), env={})  # type: ignore[arg-type]
