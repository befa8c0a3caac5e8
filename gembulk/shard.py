"""`--shard K/N`: a stable split of rows by id, so N machines together cover every row exactly once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gembulk.errors import UsageError


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            left, right = text.split("/")
            index, count = int(left), int(right)
        except ValueError:
            raise UsageError(f"--shard takes K/N, e.g. 2/4; got {text!r}") from None
        if count < 1 or not 1 <= index <= count:
            raise UsageError(f"--shard {text}: K must be between 1 and N")
        return cls(index, count)

    def owns(self, row_id: str) -> bool:
        # A cryptographic hash, not hash(): the split must be the same on every machine and Python.
        digest = hashlib.sha256(row_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
