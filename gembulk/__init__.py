"""gembulk: bulk prompt processing for the Gemini API, online or through the Batch API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gembulk")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
