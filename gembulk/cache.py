"""A response cache in SQLite shared by online and batch runs and by concurrent gembulk processes."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from gembulk import filemodes
from gembulk.errors import UsageError
from gembulk.records import Outcome, Usage
from gembulk.requestkey import request_digest

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(
    model: str, request: dict[str, Any], attachments: Sequence[str] = (), context: str | None = None
) -> str:
    """The full request decides a hit: the canonical request of gembulk.requestkey (the shared context's
    content hash included), whose digest also gives every record its fingerprint, so a cache hit and a
    resumed row always mean the same request."""
    return request_digest(model, request, attachments, context)


class ResponseCache:
    """Successful answers by request key. Errors are never stored: a retry must reach the API.

    WAL mode lets readers and one writer work at once; a busy timeout makes several processes that
    share one file wait for each other instead of failing. Each statement is its own short
    transaction, so a killed process never leaves a half-written entry.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            # Every answer is in it: created 0600, and SQLite gives its -wal and -shm files the same mode.
            filemodes.create_private(path)
        except OSError as exc:
            raise UsageError(f"--cache {path}: cannot create it ({exc.strerror or exc})") from exc
        try:
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"--cache {path}: not a usable SQLite cache ({exc})") from exc
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Outcome | None:
        row = self._db.execute("SELECT answer FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        data = json.loads(row[0])
        usage = data.get("usage")
        return Outcome(
            text=data["text"],
            error=None,
            finish_reason=data.get("finish_reason"),
            usage=Usage(**usage) if usage else None,
            model_version=data.get("model_version"),
            parsed=data.get("parsed"),
            extra={"cached": True},
        )

    def put(self, key: str, model: str, outcome: Outcome) -> None:
        if outcome.error is not None or outcome.text is None:
            return
        answer = {
            "text": outcome.text,
            "finish_reason": outcome.finish_reason,
            "usage": outcome.usage.to_json() if outcome.usage else None,
            "model_version": outcome.model_version,
            "parsed": outcome.parsed,
        }
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, model, answer, created) VALUES (?, ?, ?, ?)",
            (key, model, json.dumps(answer, ensure_ascii=False), time.time()),
        )

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
