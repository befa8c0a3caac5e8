"""Benchmarks of gembulk against bare google-genai baselines, all on the local fake Gemini API.

`python -m bench` (or `make bench`) runs every benchmark in order; `python -m bench latency quota` runs
the named ones. Each benchmark is a module `bench/bench_<name>.py` whose `main()` prints its own table
and returns its figures. See bench/README.md.
"""

from __future__ import annotations

from pathlib import Path

# The benchmarks, in the order a full run takes them.
BENCHMARKS = ("latency", "quota", "tokens", "overhead", "memory", "classic", "fake")


def available() -> list[str]:
    """BENCHMARKS, then any other bench/bench_<name>.py module (run after them, in name order)."""
    found = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    return [*BENCHMARKS, *(name for name in found if name not in BENCHMARKS)]
