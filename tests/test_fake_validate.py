"""The fake's strict reading of requests: the schema it derives from the SDK, and each refusal rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from google.genai import errors, types

from gembulk.fake import rules, schema, validate
from gembulk.fake.models import CATALOG
from tests.fake_support import Clients, RunningFake, running_fake

MODEL = "gemini-2.5-flash"
HELLO = [{"role": "user", "parts": [{"text": "hello"}]}]


def refusal(body: Any, message: str = "GenerateContentRequest") -> tuple[str, list[dict[str, str]]]:
    found = validate.check(message, body)
    assert found is not None
    violations = found.details[0]["fieldViolations"] if found.details else []
    return found.message, violations


def test_every_vertex_only_name_still_exists_in_the_sdk() -> None:
    # A renamed or removed SDK field would silently stop being refused: fail here instead.
    for message, names in schema._VERTEX_ONLY.items():
        fields = getattr(types, message).model_fields
        assert names <= set(fields), f"{message}: {sorted(names - set(fields))} no longer in the SDK"


def test_the_schema_follows_the_sdk_types() -> None:
    schema.build()
    part = schema.MESSAGES["Part"].fields
    assert part["inlineData"] is part["inline_data"]
    assert {f.name for f in part.values()} == set(types.Part.model_fields)
    assert "display_name" not in {f.name for f in schema.MESSAGES["Blob"].fields.values()}
    thinking = schema.MESSAGES["ThinkingConfig"].fields
    assert thinking["thinkingLevel"].kind == "enum" and "HIGH" in thinking["thinkingLevel"].enum
    assert schema.MESSAGES["Schema"].fields["properties"].kind == "map"


def test_unknown_names_anywhere_are_all_reported() -> None:
    # gemini-real-responses.md 3f: nested names carry "at '<path>'"; top-level ones do not (llm_wiki#49).
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x", "colour": "red"}]}],
        "generationConfig": {"includeThoughts": True},
        "foo": 1,
    }
    message, violations = refusal(body)
    head = "Invalid JSON payload received. Unknown name"
    assert message.splitlines() == [
        f"{head} \"colour\" at 'contents[0].parts[0]': Cannot find field.",
        f"{head} \"includeThoughts\" at 'generation_config': Cannot find field.",
        f'{head} "foo": Cannot find field.',
    ]
    assert [v.get("field") for v in violations] == ["contents[0].parts[0]", "generation_config", None]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"temperature": "hot"}, "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""),
        (
            {"maxOutputTokens": 1.5},
            "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), 1.5",
        ),
        (
            {"responseLogprobs": "yes"},
            "Invalid value at 'generation_config.response_logprobs' (TYPE_BOOL), \"yes\"",
        ),
        (
            {"responseModalities": ["SMELL"]},
            "Invalid value at 'generation_config.response_modalities[0]' "
            '(type.googleapis.com/google.ai.generativelanguage.v1beta.Modality), "SMELL"',
        ),
        (
            {"thinkingConfig": "on"},
            "Invalid value at 'generation_config.thinking_config' "
            '(type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig), "on"',
        ),
    ],
)
def test_values_of_the_wrong_type(config: dict[str, Any], expected: str) -> None:
    message, violations = refusal({"contents": HELLO, "generationConfig": config})
    assert message == expected
    assert violations[0]["description"] == expected


def test_what_protobuf_json_accepts() -> None:
    body = {
        "contents": {"parts": {"text": "a single content and part stand for lists"}},
        "generation_config": {"max_output_tokens": "64", "topK": 40.0, "seed": None},
        "systemInstruction": {"parts": [{"text": "both spellings"}]},
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": {"type": "object"}},
    }
    assert validate.check("GenerateContentRequest", body) is None
    schema_body = {"type": "OBJECT", "properties": {"a": {"type": "string", "extra": 1}}}
    message, _ = refusal({"contents": HELLO, "generationConfig": {"responseSchema": schema_body}})
    assert "at 'generation_config.response_schema.properties[0].value'" in message


def rule(body: dict[str, Any], model: str = MODEL) -> str | None:
    found = rules.check_generate(body, CATALOG[model])
    return None if found is None else found.message


@pytest.mark.parametrize(
    ("body", "model", "message"),
    [
        ({}, MODEL, "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            {"contents": [{"role": "user", "parts": []}]},
            MODEL,
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
        ),
        (
            {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]},
            MODEL,
            "Please use a valid role: user, model.",
        ),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, MODEL, "Request has empty input."),
        (
            {"contents": HELLO, "generationConfig": {"temperature": 5}},
            MODEL,
            # Live probe (2026-08-27) of temperature 5.
            "* GenerateContentRequest.generation_config.temperature: "
            "temperature must be in the range [0.0, 2.0].\n",
        ),
        (
            {"contents": HELLO, "generationConfig": {"responseMimeType": "image/png"}},
            MODEL,
            "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
            "`text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`.\n",
        ),
        # gemini-real-responses.md 3f (vercel/ai issue-8943-gemini-2.5-flash-error.json).
        (
            {"contents": HELLO, "generationConfig": {"presencePenalty": 0.5}},
            MODEL,
            f"Penalty is not enabled for models/{MODEL}",
        ),
        (
            {
                "contents": HELLO,
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 10, "thinkingLevel": "LOW"}},
            },
            MODEL,
            "You can only set only one of thinking budget and thinking level.",  # 3f, issue-22372-live-errors
        ),
        (
            {"contents": HELLO, "generationConfig": {"thinkingConfig": {"thinking_level": "minimal"}}},
            "gemini-3-pro-preview",
            # 3f, google-thinking-level-minimal-unsupported.json.
            "Thinking level MINIMAL is not supported for this model. Please retry with other thinking level.",
        ),
        (
            {"contents": HELLO, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
            "gemini-2.5-pro",
            "Budget 0 is invalid. This model only works in thinking mode.",
        ),
    ],
)
def test_rules(body: dict[str, Any], model: str, message: str) -> None:
    assert rule(body, model) == message


def test_what_the_rules_let_through() -> None:
    assert rule({"contents": [{"parts": [{"text": "no role is fine"}]}]}) is None
    assert rule({"contents": HELLO, "generationConfig": {"responseMimeType": "application/xml"}}) is None
    assert rule({"contents": HELLO, "generationConfig": {"presencePenalty": 0.5}}, "gemini-2.0-flash") is None
    assert rule({"contents": HELLO, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}) is None
    several = {"temperature": 3, "topP": 2, "candidateCount": 9, "stopSequences": list("abcdef")}
    lines = rule({"contents": HELLO, "generationConfig": several})
    assert lines is not None and lines.count("\n") == 4 and lines.startswith("* GenerateContentRequest")
    json_schema = {"responseJsonSchema": {"type": "object"}}
    assert "response_mime_type" in str(rule({"contents": HELLO, "generationConfig": json_schema}))


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake() as server:
        yield server


class Answer(pydantic.BaseModel):
    title: str
    score: int


def test_a_fully_configured_sdk_request_passes_the_strict_fake(api: RunningFake) -> None:
    # What the installed SDK puts on the wire for (nearly) every option is accepted: the schema comes
    # from the SDK's own types, minus only what the Gemini API refuses.
    clients = Clients(api.url)
    function = types.FunctionDeclaration(
        name="lookup",
        description="find a word",
        parameters=types.Schema(type="OBJECT", properties={"word": types.Schema(type="STRING")}),
    )
    config = types.GenerateContentConfig(
        system_instruction="Be brief.",
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        candidate_count=1,
        max_output_tokens=256,
        stop_sequences=["END"],
        seed=7,
        safety_settings=[
            types.SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_ONLY_HIGH")
        ],
        tools=[types.Tool(function_declarations=[function])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="AUTO")),
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024),
        media_resolution="MEDIA_RESOLUTION_LOW",
        response_modalities=["TEXT"],
        labels={"team": "a"},
    )
    client = clients(api_version="v1beta")
    assert client.models.generate_content(model=MODEL, contents="q", config=config).text == "echo: q"
    structured = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Answer)
    parsed = client.models.generate_content(model=MODEL, contents="q", config=structured).parsed
    assert isinstance(parsed, Answer)
    penalties = types.GenerateContentConfig(presence_penalty=0.1, frequency_penalty=0.1)
    assert client.models.generate_content(model="gemini-2.0-flash", contents="q", config=penalties).text
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=MODEL, contents="q", config=penalties)
    assert refused.value.message == f"Penalty is not enabled for models/{MODEL}"
    clients.close()
