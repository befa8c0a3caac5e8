"""Start-up of the command line: the cyclic garbage collector is held off while modules load.

Importing google-genai, aiohttp and the rest creates a few hundred thousand objects (classes,
functions, pydantic schemas) that live until the process exits. While they are created, the
collector keeps running and finds nothing to free (about 35 ms of a run's start-up); afterwards
every full collection walks all of them again (about 60 ms, one fell in the first wave of requests),
and so does the final collection at exit (about 150 ms). `gc.freeze()` moves them to the permanent
generation, which no collection visits; objects created later are collected as usual.

For the command line only: a library caller's process decides its own collector settings.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived_objects() -> Iterator[None]:
    """Create the objects of the `with` body (imports) without collecting, then freeze them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
