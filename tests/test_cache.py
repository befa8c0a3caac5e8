"""Response cache: keys from the full request, errors never cached, several processes on one file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gembulk.cache import ResponseCache, cache_key
from gembulk.errors import UsageError
from gembulk.records import Outcome, RowError, Usage

REQUEST = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_key_depends_on_model_contents_and_config() -> None:
    base = cache_key("gemini-2.5-flash", REQUEST)
    assert base == cache_key("models/gemini-2.5-flash", dict(REQUEST))
    assert base != cache_key("gemini-2.5-pro", REQUEST)
    assert base != cache_key("gemini-2.5-flash", {**REQUEST, "generationConfig": {"temperature": 0.1}})
    assert base != cache_key("gemini-2.5-flash", {**REQUEST, "systemInstruction": {"parts": [{"text": "x"}]}})


def test_round_trip_marks_cached(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c.sqlite"))
    outcome = Outcome(
        text="hello", error=None, finish_reason="STOP", usage=Usage(1, 2, 3, 6), parsed={"a": 1}
    )
    key = cache_key("m", REQUEST)
    assert cache.get(key) is None
    cache.put(key, "m", outcome)
    hit = cache.get(key)
    assert (
        hit is not None and hit.text == "hello" and hit.usage == Usage(1, 2, 3, 6) and hit.parsed == {"a": 1}
    )
    assert hit.extra == {"cached": True}
    assert (cache.hits, cache.misses) == (1, 1)


def test_errors_are_never_cached(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c.sqlite"))
    key = cache_key("m", REQUEST)
    cache.put(key, "m", Outcome(text=None, error=RowError("SAFETY", "withheld")))
    assert cache.get(key) is None and len(cache) == 0


def test_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError):
        ResponseCache(str(path))


WRITER = """
import sys
from gembulk.cache import ResponseCache, cache_key
from gembulk.records import Outcome
cache = ResponseCache(sys.argv[1])
for i in range(200):
    cache.put(cache_key("m", {"n": i, "w": sys.argv[2]}), "m", Outcome(text=f"t{i}", error=None))
    cache.get(cache_key("m", {"n": i - 1, "w": sys.argv[2]}))
"""


def test_concurrent_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ResponseCache(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(w)]) for w in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    assert len(ResponseCache(path)) == 800
