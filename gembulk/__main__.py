"""`python -m gembulk` and the `gembulk` console script: the command line."""

from __future__ import annotations

import contextlib
import os
import sys
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
        _leave(done.code)
    _leave(0)


def _leave(code: object) -> NoReturn:
    """Exit through the interpreter's normal shutdown, exit handlers included, once stdout and stderr are
    flushed here: a reader that went away (`| head`) or a closed stream cannot make the interpreter's own
    last flush print "Exception ignored … BrokenPipeError" after gembulk has said what it had to.

    The exit used to be os._exit, skipping finalization: 9-14 ms of a 600 ms one-row run (median of 15
    interleaved pairs, 2026-11-29, with the import objects frozen as startup.py does), not worth
    silently skipping every exit handler a dependency or a later change registers.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            _discard(stream)
    sys.exit(code)


def _discard(stream: object) -> None:
    """Point the stream's descriptor at /dev/null: what is still buffered goes nowhere, silently."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # type: ignore[attr-defined]
        os.close(devnull)


if __name__ == "__main__":
    main()
