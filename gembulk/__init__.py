"""gembulk: bulk prompt processing for the Gemini API, online or through the Batch API."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # The version is read from the installed metadata on first use: importing importlib.metadata costs
    # about 20 ms, paid by every command line run although only --version and the SDK need it.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("gembulk")
        except PackageNotFoundError:  # running from a source tree that was not installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
