"""The SDK speed patches: every place gembulk leans on google-genai's private internals to save time, fenced.

Each patch below is a named function with its guard (it steps aside, and the SDK works as it ships, when
the internals it relies on are not there or not as expected), an invariant test (tests/test_client.py
and tests/test_sdk_patches.py, against the real SDK) and an "Upgrade:" line saying what a new
google-genai release must be re-checked for. `install(names)` puts exactly the named patches in effect;
gembulk.client installs them all when it is imported, and `python -m bench.without_patch NAME -- ARGS`
runs the command line with one left out, to measure what it still saves.

The ledger (2026-11-29, google-genai 3.6.1, 2 cores: gembulk/bare-SDK requests/s in the same run of
`python -m bench overhead`, 4 runs with every patch and 3-4 without each one, interleaved; the one-row
run of `python -m bench startup`; latency and quota (b) walls of the same rounds):

    fast_membership        kept: 1.55 -> 0.97 x the baseline without it (-37 % requests/s)
    fast_response_pruning  kept: 1.55 -> 1.40 x (-10 %)
    shared_config          kept: 1.55 -> 1.46 x (-6 %)
    shared_tls_context     kept: one-row run 591 -> 632 ms without it (+7 %); throughput unchanged
    request_warmup,        kept, as a pair: neither changes overhead, latency or quota (b) (requests
    response_warmup        30.37 s with and without), but a --tpm run of 20 CJK rows on a 1 s window
                           (tests/test_cli_tokens.py) meets 2 429s without both, 0 with either alone in
                           3 runs each, and 2 in a full suite run with request_warmup alone

Two private uses are not speed patches and stay where they are needed: GeminiClient.get_batch and
list_batches read raw Operation JSON through `_api_client.async_request`, and outcome_from_json reads a
batch result line through `models._GenerateContentResponse_from_mldev` and
`GenerateContentResponse._from_response` (the same conversion as an online answer).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import typing
from collections.abc import Callable, Iterable
from typing import Any

import pydantic
from google.genai import _api_client, _common, types

from gembulk.client.outcomes import outcome_from_json

logger = logging.getLogger(__name__)

FAST_MEMBERSHIP = "fast_membership"
FAST_RESPONSE_PRUNING = "fast_response_pruning"
SHARED_CONFIG = "shared_config"
SHARED_TLS_CONTEXT = "shared_tls_context"
REQUEST_WARMUP = "request_warmup"
RESPONSE_WARMUP = "response_warmup"
ALL: frozenset[str] = frozenset(
    {
        FAST_MEMBERSHIP,
        FAST_RESPONSE_PRUNING,
        SHARED_CONFIG,
        SHARED_TLS_CONTEXT,
        REQUEST_WARMUP,
        RESPONSE_WARMUP,
    }
)

_active: set[str] = set()


def install(names: Iterable[str] = ALL) -> None:
    """Put exactly these patches in effect: the others are taken out, the SDK's own code put back."""
    wanted = frozenset(names)
    unknown = wanted - ALL
    if unknown:
        raise ValueError(f"unknown SDK patch {', '.join(sorted(unknown))} (known: {', '.join(sorted(ALL))})")
    _active.clear()
    _active.update(wanted)
    fast_membership(FAST_MEMBERSHIP in wanted)
    fast_response_pruning(FAST_RESPONSE_PRUNING in wanted)


def active(name: str) -> bool:
    return name in _active


# -- Patches of the SDK's modules, in effect for the whole process ---------------------------------------


def _never_contains(self: object, key: object) -> bool:
    return False


def fast_membership(on: bool) -> None:
    """Give the SDK's models a fast `in`: the same answers, without its hot-path cost.

    google-genai converts every request (its config, contents and parts) through ~90 `get_value_by_path`
    look-ups, each testing `key in model` first. A pydantic model has no `__contains__`, so Python walks
    its (name, value) pairs looking for a plain string, which never matches: the answer is always False,
    after iterating every field. Answering False at once changes no request and saves about 0.5 ms of CPU
    per request, a third of the SDK's cost at zero latency (bench/README.md).

    Guard: skipped if the SDK defines `_common.BaseModel.__contains__` itself.
    Invariant: tests/test_client.py::test_fast_membership_gives_the_answers_the_sdk_models_gave.
    Upgrade: check that `_common.BaseModel` still has no `__contains__` and still iterates (name, value)
    pairs, and that the SDK never relies on `key in model` being True.
    """
    current = vars(_common.BaseModel).get("__contains__")
    if on and current is None:
        _common.BaseModel.__contains__ = _never_contains  # type: ignore[method-assign,assignment]
    elif not on and current is _never_contains:
        del _common.BaseModel.__contains__


_UNPLANNED = object()
_sdk_pruning: Callable[..., Any] | None = None  # the SDK's own _remove_extra_fields while ours is installed


def fast_response_pruning(on: bool) -> None:
    """Give the SDK's answer pruning a per-model plan: the same fields dropped, without its per-key cost.

    Before validating an answer, google-genai drops the fields its models do not know
    (`_common._remove_extra_fields`), walking the answer recursively. For every key of every nested
    object it rebuilds the model's alias map, unwraps the field's annotation and looks up the nested
    model type: about a fifth of the SDK's CPU per answer, all of it the same for every answer. Here
    each (model, key) is worked out once, with the SDK's own rule and helpers, and remembered; keys are
    still dropped, kept and descended into exactly as before. A model whose fields cannot be resolved yet
    goes through the SDK's own function, as do non-model arguments.

    Guard: skipped if `_common` lacks `_remove_extra_fields`, `_as_base_model_type` or `_is_struct_type`.
    Invariant: tests/test_client.py::test_response_pruning_keeps_and_drops_what_the_sdk_did.
    Upgrade: diff `_common._remove_extra_fields` against `_plan_key` below (the rule it restates: which
    keys it keeps, how it unwraps Optional and list annotations, when it descends), and re-run that test.
    """
    global _sdk_pruning
    if not on:
        if _sdk_pruning is not None:
            _common._remove_extra_fields = _sdk_pruning
            _sdk_pruning = None
        return
    original = getattr(_common, "_remove_extra_fields", None)
    as_model = getattr(_common, "_as_base_model_type", None)
    is_struct = getattr(_common, "_is_struct_type", None)
    if _sdk_pruning is not None or original is None or as_model is None or is_struct is None:
        return
    _sdk_pruning = original
    _common._remove_extra_fields = _planned_pruning(original, as_model, is_struct)


def _planned_pruning(
    original: Callable[..., Any], as_model: Callable[[Any], Any], is_struct: Callable[[Any], bool]
) -> Callable[..., None]:
    plans: dict[type, dict[str, tuple[type | None, type | None] | None]] = {}

    def plan_key(model: type[pydantic.BaseModel], key: str) -> tuple[type | None, type | None] | None:
        # The SDK's rule, step by step: None drops the key; else (model of a dict value, of list items).
        fields = model.model_fields
        aliases = {info.alias: name for name, info in fields.items()}
        if key not in fields and key not in aliases:
            return None
        annotation = fields[aliases.get(key, key)].annotation
        if typing.get_origin(annotation) is typing.Union:
            annotation = typing.get_args(annotation)[0]
        item_type = None
        if not is_struct(annotation):
            item_args = typing.get_args(annotation)
            item_type = as_model(item_args[0] if item_args else None)
        return as_model(annotation), item_type

    def remove_extra_fields(model: Any, response: dict[str, object]) -> None:
        plan = plans.get(model)
        if plan is None:
            if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
                return original(model, response)
            model.model_rebuild(raise_errors=False)  # as the SDK does: resolves forward references
            if not model.__pydantic_complete__:
                return original(model, response)
            plan = plans[model] = {}
        for key, value in list(response.items()):
            step = plan.get(key, _UNPLANNED)
            if step is _UNPLANNED:
                step = plan[key] = plan_key(model, key)
            if step is None:
                response.pop(key)
            elif isinstance(value, dict):
                if step[0] is not None:
                    remove_extra_fields(step[0], value)
            elif isinstance(value, list) and step[1] is not None:
                for item in value:
                    if isinstance(item, dict):
                        remove_extra_fields(step[1], item)
        return None

    remove_extra_fields.__wrapped__ = original  # type: ignore[attr-defined]  # for the invariant test
    return remove_extra_fields


# -- Choices each client makes when it is built or sends ---------------------------------------------------


class _SharedConfig(types.GenerateContentConfig):
    """A config the SDK may copy cheaply: one instance serves every request of a run."""

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> _SharedConfig:
        return self.model_copy()


def config_type() -> type[types.GenerateContentConfig]:
    """The class of a job's config: one the SDK copies shallowly, or the SDK's own.

    google-genai deep-copies the config on every call (`model_copy(deep=True)`), about 0.2 ms of CPU
    for a config holding a JSON schema. Nothing in it is changed per request, by gembulk or by the SDK
    for a config without tools, so a shallow copy gives every call the same request at no cost.

    Guard: none needed; the subclass only answers `copy.deepcopy`, which the SDK may stop calling.
    Invariant: tests/test_client.py::test_one_config_serves_many_requests_unchanged.
    Upgrade: check the SDK still never mutates the config it was given (tools, automatic function
    calling and `http_options` handling are where it could start to), and re-run that test.
    """
    return _SharedConfig if SHARED_CONFIG in _active else types.GenerateContentConfig


def shared_tls_options() -> dict[str, Any]:
    """HttpOptions fields that give every transport the SDK builds one TLS context: the SDK's own.

    genai.Client builds three identical-purpose contexts on construction (for aiohttp, websockets and
    its httpx clients), each loading the CA bundle: about 20 ms apiece, before the first request.
    Handing it the context it would build for aiohttp (its own `_ensure_aiohttp_ssl_ctx`, so the same
    CA bundle and SSL_CERT_FILE/SSL_CERT_DIR handling) makes it build none. aiohttp and websockets get
    the context they would have had; the httpx clients serve only the SDK's sync methods, which
    gembulk never calls.

    Guard: {} (the SDK builds its own, as before) if `BaseApiClient._ensure_aiohttp_ssl_ctx` is gone,
    fails, or returns no SSLContext.
    Invariant: tests/test_client.py::test_one_tls_context_is_the_one_the_sdk_would_give_aiohttp.
    Upgrade: check that `_ensure_aiohttp_ssl_ctx(HttpOptions())` still returns {"ssl": context} and that
    `async_client_args["ssl"]` / `client_args["verify"]` still reach aiohttp, websockets and httpx.
    """
    if SHARED_TLS_CONTEXT not in _active:
        return {}
    make = getattr(_api_client.BaseApiClient, "_ensure_aiohttp_ssl_ctx", None)
    if make is None:
        return {}
    try:
        context = make(types.HttpOptions()).get("ssl")
    except Exception:  # a changed SDK helper: let the SDK do its own
        return {}
    if not isinstance(context, ssl.SSLContext):
        return {}
    return {"async_client_args": {"ssl": context}, "client_args": {"verify": context}}


def warm_request_models(config: types.GenerateContentConfig) -> None:
    """Build the SDK's request models before the first request, on the way anyway.

    The first request would build them itself (~15 ms) and so reach the server later than its pacing
    slot; a window quota then sees the request one window later arrive too soon after it (the 429 the
    quota benchmark met at every start).

    Guard: does nothing without the private `types._GenerateContentParameters`; any failure is logged at
    debug level and left to the first request.
    Invariant: tests/test_client.py::test_response_model_warm_up_builds_what_an_answer_needs.
    Upgrade: check that generate_content still validates its arguments through
    `_GenerateContentParameters` (else the warm-up builds a model no request uses).
    """
    if REQUEST_WARMUP not in _active:
        return
    parameters = getattr(types, "_GenerateContentParameters", None)  # private: the model each call builds
    try:
        contents = [types.UserContent(parts=[types.Part(text="x")])]
        if parameters is not None:
            parameters(model="warm-up", contents=contents, config=config)
    except Exception:  # only a warm-up: the first request builds whatever is left
        logger.debug("request model warm-up failed", exc_info=True)


# The SDK builds each response model (pydantic, `defer_build`) when the first answer arrives: about
# 40 ms of CPU that every answer of the first wave waits for. Building them this long after the first
# request starts puts that work where the client is waiting for answers anyway (the first wave is on
# the wire by then); if an answer comes sooner, it builds them as before and the warm-up does nothing.
# Paced runs (a --rpm/--tpm from the start) build them before the first request instead: ~20 ms of CPU
# at an arbitrary moment could hold back a paced request past its slot, squeezing the quota window of
# the request one window later (measured: the warm-up at 0.1 s delayed the quota benchmark's third
# request by 10.6 ms, more than the 1 % pacing margin of a 1 s window).
RESPONSE_WARMUP_DELAY = 0.1
# A typical answer, read through the same SDK conversion as a real one to build its models.
WARMUP_ANSWER: dict[str, Any] = {
    "candidates": [
        {"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ],
    "usageMetadata": {
        "promptTokenCount": 1,
        "candidatesTokenCount": 1,
        "totalTokenCount": 2,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1}],
    },
    "modelVersion": "warm-up",
    "responseId": "warm-up",
}


def warm_response_models() -> None:
    """Build the SDK's response models ahead of the first answer (see RESPONSE_WARMUP_DELAY).

    Guard: reads WARMUP_ANSWER through outcome_from_json, the path a batch result takes (private
    `_GenerateContentResponse_from_mldev`, which it does without); a failure is logged at debug level.
    Invariant: tests/test_client.py::test_response_model_warm_up_builds_what_an_answer_needs.
    Upgrade: check that an answer still goes through `GenerateContentResponse._from_response`, which
    builds the models this warms.
    """
    if RESPONSE_WARMUP not in _active:
        return
    try:
        outcome_from_json(WARMUP_ANSWER, parse_json=False)
    except Exception:  # only a warm-up: the first real answer builds whatever is left
        logger.debug("response model warm-up failed", exc_info=True)


def warm_response_models_soon() -> asyncio.TimerHandle | None:
    """Schedule warm_response_models RESPONSE_WARMUP_DELAY from now (an unpaced run's first request)."""
    if RESPONSE_WARMUP not in _active:
        return None
    return asyncio.get_running_loop().call_later(RESPONSE_WARMUP_DELAY, warm_response_models)
