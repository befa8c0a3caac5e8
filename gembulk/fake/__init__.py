"""A faithful local fake of the Gemini Developer API: generateContent, countTokens, models.get/list, Files,
Batches, cachedContents and embeddings, refusing what the real API refuses (--lenient to accept it).

Point the real google-genai SDK at it with ``HttpOptions(base_url=url)`` or ``GOOGLE_GEMINI_BASE_URL``.
Prompt markers (anywhere in the user text) steer it: ``[[block]]``/``[[block:REASON]]``, ``[[safety]]``,
``[[recitation]]``, ``[[max_tokens]]``, ``[[empty]]``, ``[[invalid]]``, ``[[denied]]``,
``[[fail:CODE:N]]`` (CODE in 429/500/502/503/504), ``[[drop:N]]`` and ``[[sleep:S]]``. In batches,
``[[invalid]]``/``[[denied]]``/``[[fail:CODE]]`` rows become per-request errors with gRPC codes (a batch
tries a row once, so N does not matter there), drop/sleep are ignored, and a display name with
``[[batch:fail]]`` or ``[[batch:expire]]`` ends the job FAILED or EXPIRED.
Control endpoints for tests: ``GET /_fake/stats``, ``POST /_fake/reset``, ``GET|POST /_fake/config``.
"""

from gembulk.fake.config import BUILTIN_MODELS, FakeConfig
from gembulk.fake.content import count_tokens, expected_text
from gembulk.fake.embeddings import vector
from gembulk.fake.server import FakeServer, serve

__all__ = ["BUILTIN_MODELS", "FakeConfig", "FakeServer", "count_tokens", "expected_text", "serve", "vector"]
