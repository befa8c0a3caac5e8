"""gzip and zstd as both compressed inputs and outputs know them: names, first bytes, the zstd module."""

from __future__ import annotations

from typing import Any

from gembulk.errors import UsageError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAGIC = {"gzip": GZIP_MAGIC, "zstd": ZSTD_MAGIC}

# A compressed file's name ends in one of these; what comes before it names the format inside.
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def compression_of(head: bytes) -> str | None:
    """gzip or zstd when a file's first bytes say so, else None (the bytes are read as they are)."""
    for name, magic in MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def zstd_module(missing: str) -> Any:
    """The zstd module: the standard library's (Python 3.14+) or zstandard; UsageError(missing) without."""
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+

        return zstd
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise UsageError(missing) from None
    return zstandard


def is_zstandard(module: Any) -> bool:
    """zstandard (a decompressobj per frame) rather than the standard library's compression.zstd."""
    return bool(module.__name__ == "zstandard")


def zstd_decompressor(missing: str) -> Any:
    """A fresh decompressor for one zstd frame, from whichever zstd module there is."""
    zstd = zstd_module(missing)
    if is_zstandard(zstd):
        return zstd.ZstdDecompressor().decompressobj()
    return zstd.ZstdDecompressor()
