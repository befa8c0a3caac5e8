"""The canonical request behind fingerprints and cache keys: the fast per-row digest agrees with the plain
one whatever the shared context and settings hold, and only what shapes the answer changes it."""

from __future__ import annotations

import pytest

from gembulk.client.request import request_json
from gembulk.records import SharedPart
from gembulk.requestkey import _SENTINEL, RequestDigests, canonical_request, request_digest
from gembulk.settings import GenerationSettings

MODEL = "gemini-2.5-flash"
CONTEXT = "c" * 64  # a shared context's content hash


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(),
        GenerationSettings(system=f"a system text holding {_SENTINEL} itself"),  # the plain path
        GenerationSettings(temperature=0.0, shared=(SharedPart(text="the handbook"),)),
    ],
)
@pytest.mark.parametrize("prompt", ["p", _SENTINEL, f"before {_SENTINEL} after", '"\\'])
@pytest.mark.parametrize("context", [None, CONTEXT])
def test_the_fast_digest_agrees_with_the_plain_one(
    settings: GenerationSettings, prompt: str, context: str | None
) -> None:
    fast = RequestDigests(settings, MODEL, context).digest(prompt)
    assert fast == request_digest(MODEL, request_json(settings, prompt), (), context)


def test_the_shared_context_changes_the_digest_only_when_given() -> None:
    plain = RequestDigests(GenerationSettings(), MODEL).digest("p")
    assert RequestDigests(GenerationSettings(), MODEL, "").digest("p") == plain  # empty: as without
    with_context = RequestDigests(GenerationSettings(), MODEL, CONTEXT).digest("p")
    other_context = RequestDigests(GenerationSettings(), MODEL, "d" * 64).digest("p")
    assert len({plain, with_context, other_context}) == 3


def test_the_model_prefix_and_key_order_do_not_count() -> None:
    request = {
        "contents": [{"role": "user", "parts": [{"text": "p"}]}],
        "generationConfig": {"temperature": 1},
    }
    reordered = {"generationConfig": {"temperature": 1}, "contents": request["contents"]}
    assert request_digest(f"models/{MODEL}", request) == request_digest(MODEL, reordered)
    assert canonical_request(f"models/{MODEL}", request)["model"] == MODEL


def test_attachments_are_absent_from_the_canonical_request_unless_given() -> None:
    request = request_json(GenerationSettings(), "p")
    assert set(canonical_request(MODEL, request)) == {"model", "request"}
    keyed = canonical_request(MODEL, request, ("sha256:1", "url:https://x/a.png"), CONTEXT)
    assert keyed["attachments"] == ["sha256:1", "url:https://x/a.png"] and keyed["context"] == CONTEXT
    # the order of a row's attachments is part of what is asked
    swapped = request_digest(MODEL, request, ("url:https://x/a.png", "sha256:1"))
    assert swapped != request_digest(MODEL, request, ("sha256:1", "url:https://x/a.png"))
