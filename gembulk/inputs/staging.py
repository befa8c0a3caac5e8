"""Where an input is read from, and as what: a file as it is; stdin or a pipe spooled to a file first."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from gembulk.errors import InputError
from gembulk.inputs.formats import detect_format, sniff_format
from gembulk.inputs.source import STDIN_NAME, InputSpec
from gembulk.inputs.stream import is_stream, spool_stream


@dataclass(frozen=True)
class StagedInput:
    """An input made readable as often as the run needs: a regular file and its format."""

    spec: InputSpec
    spool: str | None  # a temporary copy of stdin or of a pipe: the caller deletes it
    stream: bool  # read from stdin or a pipe (its identity is its content, not its path)


async def stage_input(
    path: str,
    explicit_format: str | None,
    *,
    id_column: str | None = None,
    delimiter: str | None = None,
    kept_copy: str | None = None,
    spool_dir: str | None = None,
    spool_prefix: str = "gembulk-stdin-",
) -> StagedInput:
    """Check the input is there, spool it when it can be read only once, and settle its format.

    kept_copy: a copy of an earlier stdin to read instead (a batch's, for `batch wait|fetch`).
    spool_dir, spool_prefix: where a spooled copy goes (default: the temporary directory), how it is named.
    """
    stream = is_stream(path)
    if not stream and os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not an input file")
    if not stream and not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    fmt = detect_format(path, explicit_format)
    display_name: str | None = STDIN_NAME if path == "-" else path
    spool = None
    if path == "-" and kept_copy is not None:
        readable = kept_copy
    elif stream:
        spool = readable = await spool_stream(path, spool_dir, spool_prefix)
    else:
        readable, display_name = path, None
    try:
        if fmt is None:
            fmt = await sniff_format(readable, display_name or path)
    except BaseException:
        if spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool)
        raise
    spec = InputSpec(readable, fmt, id_column=id_column, display_name=display_name, delimiter=delimiter)
    return StagedInput(spec, spool, stream)
