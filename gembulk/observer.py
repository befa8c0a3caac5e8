"""The observer seam: how the pipeline tells a progress display what is happening, without knowing it."""

from __future__ import annotations

from typing import Protocol

from gembulk.stats import RunStats


class RunObserver(Protocol):
    """Progress displays implement this; the pipeline calls it and never imports a UI library."""

    def start(self, stats: RunStats, *, title: str) -> None:
        """The run begins; `stats` is live and may be read at any time until `finish`."""

    def message(self, text: str) -> None:
        """A human-readable line for stderr (resume notices, interrupt notices)."""

    def phase(self, text: str) -> None:
        """A short state change, e.g. a batch job moving to RUNNING."""

    def finish(self, stats: RunStats, *, elapsed: float, outcome: str) -> None:
        """The run is over; print the summary unless quiet."""


class NullObserver:
    """Shows nothing; for library use and tests."""

    def start(self, stats: RunStats, *, title: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def phase(self, text: str) -> None:
        pass

    def finish(self, stats: RunStats, *, elapsed: float, outcome: str) -> None:
        pass
