"""Conformance, refusals: every validation error of the strict fake over raw HTTP, with the real body.

Where the project's notes on real API answers quote the real body (gemini-real-responses.md, sections
"3f" etc. below), the fake's body must equal it; the other messages are cited in gembulk/fake/rules.py,
validate.py and caches.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.rest_support import EMBED_MODEL, MODEL, Rest, error_of, text_body
from tests.fake_support import running_fake

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture(scope="module")
def rest() -> Iterator[Rest]:
    with running_fake(file_processing=30.0) as api:
        yield Rest(api.url)


def test_misplaced_include_thoughts_is_the_cookbook_body(rest: Rest) -> None:
    # gemini-real-responses.md 3f: Get_started_thinking_REST.ipynb, cell 13, verbatim.
    response = rest.generate(text_body("hi", generationConfig={"includeThoughts": True}))
    unknown = 'Invalid JSON payload received. Unknown name "includeThoughts"'
    description = f"{unknown} at 'generation_config': Cannot find field."
    assert (response.status_code, error_of(response)) == (
        400,
        {
            "code": 400,
            "message": description,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": BAD_REQUEST,
                    "fieldViolations": [{"field": "generation_config", "description": description}],
                }
            ],
        },
    )


def test_unknown_top_level_field_names_no_field(rest: Rest) -> None:
    # The top-level form of 3f, as a live body quotes it (nashsu/llm_wiki#49): no "at", no "field".
    error = error_of(rest.generate(text_body("hi", foo=1)))
    description = 'Invalid JSON payload received. Unknown name "foo": Cannot find field.'
    assert error["message"] == description
    assert error["details"] == [{"@type": BAD_REQUEST, "fieldViolations": [{"description": description}]}]


@pytest.mark.parametrize(
    ("model", "config", "message"),
    [
        # 3f: vercel/ai issue-8943-gemini-2.5-flash-error.json.
        (MODEL, {"presencePenalty": 0.5}, "Penalty is not enabled for models/gemini-2.5-flash"),
        (MODEL, {"frequencyPenalty": 0.5}, "Penalty is not enabled for models/gemini-2.5-flash"),
        # 3f: issue-22372-live-errors.json.
        (
            MODEL,
            {"thinkingConfig": {"thinkingBudget": 128, "thinkingLevel": "HIGH"}},
            "You can only set only one of thinking budget and thinking level.",
        ),
        # 3f: google-thinking-level-minimal-unsupported.json.
        (
            "gemini-3-pro-preview",
            {"thinkingConfig": {"thinkingLevel": "MINIMAL"}},
            "Thinking level MINIMAL is not supported for this model. Please retry with other thinking level.",
        ),
    ],
)
def test_settings_the_model_refuses(rest: Rest, model: str, config: dict[str, Any], message: str) -> None:
    response = rest.generate(text_body("hi", generationConfig=config), model=model)
    assert (response.status_code, error_of(response)) == (
        400,
        {"code": 400, "message": message, "status": "INVALID_ARGUMENT"},
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}, "Please use a valid role: user, model."),
        (
            text_body("x", generationConfig={"temperature": 5}),
            "* GenerateContentRequest.generation_config.temperature: "
            "temperature must be in the range [0.0, 2.0].\n",
        ),
        (
            text_body("x", generationConfig={"responseMimeType": "image/png"}),
            "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
            "`text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`.\n",
        ),
        ({"contents": []}, "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            {"contents": [{"role": "user", "parts": []}]},
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
        ),
        (text_body(""), "Request has empty input."),
        (
            # 3e: python-genai#744 (the fake checks inline data's type).
            {"contents": [{"parts": [{"inlineData": {"mimeType": "application/cu-seeme", "data": "AAAA"}}]}]},
            "Unsupported MIME type: application/cu-seeme",
        ),
    ],
)
def test_request_level_refusals(rest: Rest, body: dict[str, Any], message: str) -> None:
    response = rest.generate(body)
    assert (response.status_code, error_of(response)) == (
        400,
        {"code": 400, "message": message, "status": "INVALID_ARGUMENT"},
    )


def test_wrong_value_types_carry_field_violations(rest: Rest) -> None:
    error = error_of(
        rest.generate(text_body("x", generationConfig={"temperature": "hot", "candidateCount": "two"}))
    )
    lines = [
        "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"",
        "Invalid value at 'generation_config.candidate_count' (TYPE_INT32), \"two\"",
    ]
    assert error["message"] == "\n".join(lines)
    violations = error["details"][0]["fieldViolations"]
    assert violations == [
        {"field": "generation_config.temperature", "description": lines[0]},
        {"field": "generation_config.candidate_count", "description": lines[1]},
    ]


def test_too_many_input_tokens(rest: Rest) -> None:
    # 3d: gemini-cli#4231, "The input token count (3475108) exceeds the maximum number of tokens allowed
    # (1048576)."
    text = "x" * (4 * 1_048_576 + 4)
    error = error_of(rest.generate(text_body(text)))
    assert (
        error["message"]
        == "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
    )
    counted = rest.generate(text_body(text), verb="countTokens")  # countTokens counts any size
    assert counted.json()["totalTokens"] == 1_048_577


@pytest.mark.parametrize(
    ("model", "verb", "message"),
    [
        # 3h: pydantic-ai cassettes (generateContent says "ModelService.ListModels", the others "ListModels").
        (
            "gemini-3.6-flahs",
            "generateContent",
            "models/gemini-3.6-flahs is not found for API version v1beta, "
            "or is not supported for generateContent. "
            "Call ModelService.ListModels to see the list of available models and their supported methods.",
        ),
        (
            "nonexistent-model",
            "countTokens",
            "models/nonexistent-model is not found for API version v1beta, "
            "or is not supported for countTokens. "
            "Call ListModels to see the list of available models and their supported methods.",
        ),
        (
            "nonexistent-model",
            "batchEmbedContents",
            "models/nonexistent-model is not found for API version v1beta, "
            "or is not supported for embedContent. "
            "Call ListModels to see the list of available models and their supported methods.",
        ),
        (
            EMBED_MODEL,
            "generateContent",
            f"models/{EMBED_MODEL} is not found for API version v1beta, "
            "or is not supported for generateContent. "
            "Call ModelService.ListModels to see the list of available models and their supported methods.",
        ),
    ],
)
def test_unknown_models_and_methods(rest: Rest, model: str, verb: str, message: str) -> None:
    response = rest.generate(text_body("x"), model=model, verb=verb)
    assert (response.status_code, error_of(response)) == (
        404,
        {"code": 404, "message": message, "status": "NOT_FOUND"},
    )


def test_cached_content_refusals(rest: Rest) -> None:
    # 403 for a cache that does not exist (live answers quoted in public client code).
    missing = rest.generate(text_body("x", cachedContent="cachedContents/none"))
    assert error_of(missing) == {
        "code": 403,
        "message": "CachedContent not found (or permission denied)",
        "status": "PERMISSION_DENIED",
    }
    small = rest.post(
        "/v1beta/cachedContents", {"model": f"models/{MODEL}", "contents": [{"parts": [{"text": "tiny"}]}]}
    )
    assert (
        error_of(small)["message"]
        == "Cached content is too small. total_token_count=1, min_total_token_count=1024"
    )
    big = {"model": f"models/{MODEL}", "contents": [{"role": "user", "parts": [{"text": "y" * 8000}]}]}
    name = rest.post("/v1beta/cachedContents", big).json()["name"]
    with_system = text_body("x", cachedContent=name, systemInstruction={"parts": [{"text": "be brief"}]})
    assert error_of(rest.generate(with_system))["message"] == (
        "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
        "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
    )
    other_model = rest.generate(text_body("x", cachedContent=name), model="gemini-2.5-pro")
    assert error_of(other_model)["message"] == (
        "Model used by GenerateContent request (models/gemini-2.5-pro) and CachedContent "
        "(models/gemini-2.5-flash) has to be the same."
    )


def test_a_file_still_processing(rest: Rest) -> None:
    start = rest.post(
        "/upload/v1beta/files",
        {"file": {"display_name": "clip"}},
        headers={
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Type": "video/mp4",
        },
    )
    done = rest.post(
        start.headers["x-goog-upload-url"].removeprefix(rest.url),
        b"\0" * 32,
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
    )
    file = done.json()["file"]
    assert file["state"] == "PROCESSING"  # 5f: video starts PROCESSING
    part = {"fileData": {"mimeType": "video/mp4", "fileUri": file["uri"]}}
    error = error_of(rest.generate({"contents": [{"parts": [part, {"text": "what happens?"}]}]}))
    file_id = file["name"].removeprefix("files/")
    assert error == {
        "code": 400,
        "message": f"The File {file_id} is not in an ACTIVE state and usage is not allowed.",
        "status": "FAILED_PRECONDITION",
    }


def test_embedding_batches_over_100_requests(rest: Rest) -> None:
    # 3e: vercel/ai issue-16101-google-batch-embed-150-error.json.
    request = {"model": f"models/{EMBED_MODEL}", "content": {"parts": [{"text": "x"}]}}
    error = error_of(
        rest.post(f"/v1beta/models/{EMBED_MODEL}:batchEmbedContents", {"requests": [request] * 150})
    )
    assert error == {
        "code": 400,
        "message": "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
        "status": "INVALID_ARGUMENT",
    }


def test_lenient_accepts_what_the_strict_fake_refuses() -> None:
    accepted = [
        text_body("x", generationConfig={"includeThoughts": True}),
        text_body("x", foo=1),
        text_body("x", generationConfig={"presencePenalty": 0.5, "temperature": 5}),
        text_body("x", generationConfig={"thinkingConfig": {"thinkingBudget": 1, "thinkingLevel": "LOW"}}),
        {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]},
        text_body("x", cachedContent="cachedContents/none"),
    ]
    with running_fake(lenient=True) as api:
        rest = Rest(api.url)
        for body in accepted:
            response = rest.generate(body)
            assert response.status_code == 200, (body, response.text)
        assert rest.post(f"/models/{MODEL}:generateContent", text_body("no version")).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        (
            f"/v1beta/models/{EMBED_MODEL}:embedContent",
            {"content": {"parts": [{"text": "x"}]}, "dims": 3},
            "",
        ),
        (
            f"/v1beta/models/{EMBED_MODEL}:batchEmbedContents",
            {"requests": [{"content": {"parts": [{"text": "x"}]}, "task": "x"}]},
            " at 'requests[0]'",
        ),
        ("/v1beta/cachedContents", {"model": f"models/{MODEL}", "contents": [], "ttlSeconds": 60}, ""),
        (
            f"/v1beta/models/{MODEL}:countTokens",
            {"generateContentRequest": {"contents": [{"parts": [{"txt": "x"}]}]}},
            " at 'generate_content_request.contents[0].parts[0]'",
        ),
    ],
)
def test_unknown_names_on_every_endpoint(rest: Rest, path: str, body: dict[str, Any], where: str) -> None:
    error = error_of(rest.post(path, body))
    name = next(k for k in ("dims", "task", "ttlSeconds", "txt") if k in json.dumps(body))
    assert (
        error["message"] == f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'
    )
