"""The edge where errors become exit codes and one line on stderr (cli/app._report), and the option checks
that run before it (cli/run_options, settings): every refusal one readable line, naming the option."""

from __future__ import annotations

import errno
import importlib
from pathlib import Path

import pytest

from gembulk.cli.run_options import RunArgs, run_options
from gembulk.errors import (
    BatchError,
    ExitCode,
    FatalAPIError,
    GembulkError,
    InputError,
    NotReadyError,
    OutputClosedError,
    OutputConflictError,
    OutputWriteError,
    StateFileError,
    TemplateError,
    UsageError,
)
from gembulk.settings import API_KEY_VISIBLE, NO_API_KEY, api_key_of, parse_size

KEY_ENV = {"GEMINI_API_KEY": "k"}
# The module, not the Typer app that gembulk.cli exports under the same name.
cli_app = importlib.import_module("gembulk.cli.app")


@pytest.fixture
def quiet_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMBULK_DEBUG", raising=False)
    monkeypatch.setattr(cli_app, "debugging", lambda: False)


@pytest.mark.parametrize(
    ("error", "code", "stderr"),
    [
        (UsageError("bad option"), 2, "gembulk: error: bad option\n"),
        (InputError("in.csv line 3: bad quote"), 2, "gembulk: error: in.csv line 3: bad quote\n"),
        (TemplateError("no column x"), 2, "gembulk: error: no column x\n"),
        (
            OutputConflictError("another job", hint="use -o"),
            2,
            "gembulk: error: another job\ngembulk: hint: use -o\n",
        ),
        (StateFileError("state corrupt"), 2, "gembulk: error: state corrupt\n"),
        (FatalAPIError("API key not valid"), 3, "gembulk: error: API key not valid\n"),
        (BatchError("job gone"), 3, "gembulk: error: job gone\n"),
        (NotReadyError("2 jobs still running"), 4, "gembulk: 2 jobs still running\n"),  # not an error
        (OutputClosedError("reader gone"), 141, ""),  # silent: the code says it
        (GembulkError("generic"), 2, "gembulk: error: generic\n"),
    ],
)
def test_each_error_maps_to_its_documented_code_and_one_line(
    quiet_debug: None, capsys: pytest.CaptureFixture[str], error: GembulkError, code: int, stderr: str
) -> None:
    assert cli_app._report(error) == code
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", stderr)


def test_a_write_error_names_the_file_the_reason_and_how_to_finish(
    quiet_debug: None, capsys: pytest.CaptureFixture[str]
) -> None:
    error = OutputWriteError("out.jsonl", OSError(errno.ENOSPC, "No space left on device"))
    assert error.errno == errno.ENOSPC and error.path == "out.jsonl"
    assert cli_app._report(error) == ExitCode.FATAL_API
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "gembulk: error: cannot write out.jsonl: No space left on device"
    assert lines[1].startswith("gembulk: hint: fix that") and len(lines) == 2


def test_an_error_inside_a_group_of_one_is_reported_as_itself(
    quiet_debug: None, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [FatalAPIError("denied")])])
    assert cli_app._report(cli_app._unwrap(nested)) == 3
    assert capsys.readouterr().err == "gembulk: error: denied\n"
    two = ExceptionGroup("two", [UsageError("a"), UsageError("b")])
    assert cli_app._unwrap(two) is two  # more than one: not guessed at


@pytest.mark.parametrize(
    ("exc", "code", "stderr"),
    [
        (BrokenPipeError(), 141, ""),
        (KeyboardInterrupt(), 130, "gembulk: interrupted\n"),
        (SystemExit(5), 5, ""),
        (SystemExit("a message"), 1, ""),
        (
            RuntimeError("boom"),
            70,
            "gembulk: internal error: RuntimeError: boom (run with --debug for details)\n",
        ),
    ],
)
def test_what_is_not_a_gembulk_error(
    quiet_debug: None, capsys: pytest.CaptureFixture[str], exc: BaseException, code: int, stderr: str
) -> None:
    assert cli_app._report(exc) == code
    assert capsys.readouterr().err == stderr


def test_gembulk_debug_adds_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_app, "debugging", lambda: False)
    monkeypatch.setenv("GEMBULK_DEBUG", "1")
    try:
        raise UsageError("traced")
    except UsageError as raised:
        assert cli_app._report(raised) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.endswith("gembulk: error: traced\n")


# -- option checks: UsageError naming the option ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"detach": True}, "--detach works only with --batch"),
        ({"batch": True, "poll_interval": 0.0}, "--poll-interval must be a positive number, got 0.0"),
        ({"batch": True, "poll_max_interval": -1.0}, "--poll-max-interval must be a positive number"),
        ({"batch": True, "batch_max_bytes": "0"}, "--batch-max-bytes must be at least 1 byte, got '0'"),
        ({"rpm": 0.0}, "--rpm must be a positive number, got 0.0"),
        ({"tpm": -5.0}, "--tpm must be a positive number"),
        ({"max_attempts": 0}, "--max-attempts must be a positive number"),
        ({"timeout": 0.0}, "--timeout must be a positive number"),
        ({"max_cost": 0.0}, "--max-cost must be a positive number"),
        ({"max_download": "0"}, "--max-download must be at least 1 byte"),
        ({"max_download": "12 parsecs"}, "--max-download: expected a size such as"),
        ({"delimiter": "::"}, "--delimiter '::': give one character"),
        ({"delimiter": '"'}, "give one character other than a quote or a line break"),
        ({"delimiter": "\n"}, "give one character other than a quote or a line break"),
        ({"model": ["ok-model", "../../files"]}, "-m '../../files': not a model name"),
        ({"model": ["gemini\u200b-flash"]}, "not a model name"),
        ({"model": ["a%2fb"]}, "not a model name"),
        ({"shard": "0/3"}, "--shard"),
        ({"shard": "two"}, "--shard"),
    ],
)
def test_options_that_cannot_run_are_refused_by_name(given: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        run_options(RunArgs(input="in.csv", **given), env=KEY_ENV)  # type: ignore[arg-type]
    assert message in raised.value.message and "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("tab", "\t"),
        ("\\t", "\t"),
        ("TAB", "\t"),
        ("comma", ","),
        ("Semicolon", ";"),
        ("pipe", "|"),
        ("space", " "),
        (";", ";"),
        (None, None),
    ],
)
def test_delimiter_names(given: str | None, expected: str | None) -> None:
    assert run_options(RunArgs(input="in.csv", delimiter=given), env=KEY_ENV).delimiter == expected


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1900000000", 1_900_000_000),
        ("500MB", 500_000_000),
        ("1.9G", 1_900_000_000),
        ("1.9gb", 1_900_000_000),
        ("14MiB", 14 * 2**20),
        (" 2KiB ", 2048),
        ("3k", 3000),
        ("1GiB", 2**30),
        ("10b", 10),
    ],
)
def test_sizes_in_decimal_and_binary_units(text: str, size: int) -> None:
    assert parse_size("--x", text) == size


@pytest.mark.parametrize("text", ["", "MB", "1TB", "1.2.3M", "-5MB", "0.5"])
def test_what_is_not_a_size(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--x"):
        parse_size("--x", text)


def test_zero_is_a_size_only_where_allowed() -> None:
    assert parse_size("--inline-limit", "0", allow_zero=True) == 0
    options = run_options(RunArgs(input="in.csv", inline_limit="0", max_download="2MB"), env=KEY_ENV)
    assert (options.inline_limit, options.max_download, options.download_limit) == (0, 2_000_000, 2_000_000)
    default = run_options(RunArgs(input="in.csv", inline_limit="1MiB"), env=KEY_ENV)
    assert default.download_limit == 2**20  # no --max-download: the inline limit


def test_without_a_key_only_a_dry_run_may_start() -> None:
    with pytest.raises(UsageError) as raised:
        run_options(RunArgs(input="in.csv"), env={})
    assert raised.value.message == NO_API_KEY
    assert run_options(RunArgs(input="in.csv", dry_run=True), env={}).api_key is None
    blank = {"GEMINI_API_KEY": "  ", "GOOGLE_API_KEY": " second "}
    assert run_options(RunArgs(input="in.csv"), env=blank).api_key == "second"


def test_a_key_typed_on_the_command_line_is_warned_about_once(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert api_key_of("typed-key", None, {"GEMINI_API_KEY": "env"}, warnings.append) == "typed-key"
    assert warnings == [f"gembulk: warning: {API_KEY_VISIBLE}"]
    key_file = tmp_path / "key"
    key_file.write_text("  from-file\n")
    for given in (("@" + str(key_file), None), (None, str(key_file))):
        assert api_key_of(*given, {}, warnings.append) == "from-file"
    assert len(warnings) == 1  # a file is not visible to ps


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "does not hold one API key"),
        (b"\n\n", "does not hold one API key"),
        (b"key one", "does not hold one API key"),
        (b"\xff\xfe k", "does not hold one API key"),
        (b"k" * (64 * 1024 + 1), "does not hold one API key"),
    ],
)
def test_a_key_file_must_hold_one_key_and_its_content_is_never_shown(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "key.txt"
    path.write_bytes(content)
    with pytest.raises(UsageError) as raised:
        api_key_of(None, str(path), {})
    assert raised.value.message == f"--api-key-file {path}: {message} (put only the key in the file)"
    with pytest.raises(UsageError, match=r"^--api-key @"):
        api_key_of(f"@{path}", None, {})


def test_a_key_file_that_is_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read it \(Is a directory\)"):
        api_key_of(None, str(tmp_path), {})
