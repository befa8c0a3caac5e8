"""Unit tests of the fake's deterministic answers: tokens, markers, JSON-schema answers, response bodies."""

from __future__ import annotations

import json

import pytest

from gembulk.fake import count_tokens, expected_text
from gembulk.fake.answer import answer_text, build_response, stream_chunks
from gembulk.fake.content import Markers, parse_markers, parse_request


def _prompt(text: str, **config: object) -> object:
    body: dict[str, object] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if config:
        body["generationConfig"] = config
    return parse_request(body)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 1),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("x" * 400, 100),
        ("café", 2),
        ("日本語です", 4),
        ("🙂" * 3, 3),
    ],
)
def test_count_tokens(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


def test_expected_text_is_derived_from_the_prompt() -> None:
    assert expected_text("hi there") == "echo: hi there"


def test_markers() -> None:
    assert parse_markers("plain") == Markers()
    assert parse_markers("x [[block]]").block == "PROHIBITED_CONTENT"
    assert parse_markers("[[block:OTHER]] y").block == "OTHER"
    marks = parse_markers("[[fail:503:2]] [[drop:1]] [[sleep:0.25]] [[invalid]]")
    assert (marks.fail_code, marks.fail_times, marks.drop_times, marks.sleep, marks.invalid) == (
        503,
        2,
        1,
        0.25,
        True,
    )
    assert parse_markers("[[fail:418:2]]").fail_times == 0  # only transient codes


def test_prompt_reads_both_spellings_and_counts_system_text() -> None:
    body = {
        "contents": [
            {"parts": [{"text": "ab"}, {"text": "cd"}]},
            {"role": "model", "parts": [{"text": "ef"}]},
        ],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "generation_config": {"response_mime_type": "application/json"},
    }
    prompt = parse_request(body)
    assert prompt.user == "abcdef"
    assert prompt.system == "sys"
    assert prompt.tokens == count_tokens("sysabcdef")
    assert prompt.mime == "application/json"


def test_openapi_schema_answer_conforms() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "n": {"type": "INTEGER", "minimum": 100},
            "score": {"type": "NUMBER"},
            "ok": {"type": "BOOLEAN"},
            "kind": {"type": "STRING", "enum": ["a", "b"]},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "inner": {"type": "OBJECT", "properties": {"x": {"type": "INTEGER"}}},
        },
    }
    value = json.loads(
        answer_text(_prompt("hello", responseMimeType="application/json", responseSchema=schema), "m")
    )
    assert value == {
        "name": "name: hello",
        "n": 100,
        "score": 5.5,
        "ok": True,
        "kind": "a",
        "tags": ["tags: hello"],
        "inner": {"x": 5},
    }


def test_json_schema_answer_follows_refs_and_nullable_types() -> None:
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2},
            "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
            "maybe": {"type": ["string", "null"]},
        },
    }
    text = answer_text(
        _prompt("abc", response_mime_type="application/json", response_json_schema=schema), "m"
    )
    assert json.loads(text) == {"items": [{"id": 3}, {"id": 3}], "note": "note: abc", "maybe": "maybe: abc"}


def test_json_without_schema_wraps_the_answer() -> None:
    text = answer_text(_prompt("q", responseMimeType="application/json"), "m")
    assert json.loads(text) == {"answer": expected_text("q")}


def test_usage_adds_up_and_thinking_depends_on_the_model() -> None:
    body = build_response(_prompt("hello world"), "gemini-2.5-flash", "r" * 23)
    usage = body["usageMetadata"]
    assert usage["promptTokenCount"] == count_tokens("hello world")
    assert usage["candidatesTokenCount"] == count_tokens(expected_text("hello world"))
    assert usage["thoughtsTokenCount"] == count_tokens("hello world") % 7 + 2
    assert usage["totalTokenCount"] == sum(
        usage[k] for k in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
    )
    assert list(body) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert "thoughtsTokenCount" not in build_response(_prompt("x"), "gemini-2.0-flash", "r")["usageMetadata"]


def test_stream_chunks_split_the_answer() -> None:
    chunks = stream_chunks(_prompt("a longer prompt to split"), "gemini-2.5-flash", "rid")
    assert 2 <= len(chunks) <= 3
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == expected_text("a longer prompt to split")
    assert [c["candidates"][0].get("finishReason") for c in chunks][-1] == "STOP"
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert {c["responseId"] for c in chunks} == {"rid"}
