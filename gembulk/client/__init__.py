"""The client stage: the only code that talks to google-genai (and so the only one that imports it).

seam         GeminiClient: the SDK client built on purpose, one request sent, the cachedContents, Files and
             Batch API calls
request      a row's request in the SDK's types, and in proto-JSON for batch lines
outcomes     an answer classified: text, or a row failure that names its reason
failures     SDK and transport exceptions turned into CallFailed
transport    the aiohttp session the SDK sends through
sdk_patches  the speed patches that lean on the SDK's private internals, fenced and installed here
"""

from gembulk.client import sdk_patches
from gembulk.client.failures import call_failed_from_api_error, parse_duration, scrub
from gembulk.client.outcomes import OK_FINISH_REASONS, outcome_from_json, outcome_from_response
from gembulk.client.request import generate_config, request_json
from gembulk.client.seam import BATCH_INPUT_MIME_TYPE, CacheEntry, GeminiClient, UploadedMedia
from gembulk.client.transport import environment_routes_requests
from gembulk.settings import GenerationSettings  # its home is settings; importable here too

__all__ = [
    "BATCH_INPUT_MIME_TYPE",
    "OK_FINISH_REASONS",
    "CacheEntry",
    "GeminiClient",
    "GenerationSettings",
    "UploadedMedia",
    "call_failed_from_api_error",
    "environment_routes_requests",
    "generate_config",
    "outcome_from_json",
    "outcome_from_response",
    "parse_duration",
    "request_json",
    "scrub",
]

sdk_patches.install()  # all of them; bench/without_patch.py installs all but one, to measure it
