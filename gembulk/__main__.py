"""`python -m gembulk` and the `gembulk` console script: the command line."""

from __future__ import annotations

from typing import NoReturn

from gembulk import stdstreams
from gembulk.startup import long_lived_objects


def main() -> NoReturn:
    stdstreams.guard()  # before anything opens a file: a closed fd 0-2 must not be handed out
    with long_lived_objects():  # see gembulk/startup.py: ~35 ms at start-up, ~150 ms at exit
        from gembulk.cli import main as cli_main
    try:
        cli_main()
    except SystemExit as done:
        _exit_now(done.code)
    _exit_now(0)


def _exit_now(code: object) -> NoReturn:
    """Exit without the interpreter's finalization, once everything the run wrote is flushed.

    Finalization tears down every module and frees the objects of google-genai, pydantic and aiohttp
    one by one: 15-25 ms after the run is over (measured on 10-row runs). By the time the command
    returns, its output file is closed and synced and its event loop and threads are shut down; what
    the registered exit handlers would still do (flush the logging handlers and the standard streams)
    is done here.
    """
    import contextlib
    import logging
    import os
    import sys

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as the interpreter does
        print(code, file=sys.stderr)
        status = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A reader that went away (`| head`), or a closed stream: nothing more can be said there.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
