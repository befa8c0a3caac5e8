"""The SDK speed patches as a set: installed by name, each stepping aside when the SDK changes under it,
and none of them changing what is sent or read (the invariant of each one is in tests/test_client.py)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator

import pytest
from google.genai import _api_client, _common, types

from gembulk.client import GeminiClient, outcome_from_json, sdk_patches
from gembulk.client.request import generate_config
from gembulk.settings import GenerationSettings
from tests.fake_support import RunningFake, running_fake


@pytest.fixture
def patches() -> Iterator[None]:
    """Whatever a test installs, every patch is back in effect afterwards (as gembulk.client leaves them)."""
    try:
        yield
    finally:
        sdk_patches.install()


def sdk_remove_extra_fields_is_its_own() -> bool:
    return not hasattr(_common._remove_extra_fields, "__wrapped__")


def test_install_puts_exactly_the_named_patches_in_effect(patches: None) -> None:
    sdk_patches.install(())
    assert "__contains__" not in vars(_common.BaseModel)
    assert sdk_remove_extra_fields_is_its_own()
    assert sdk_patches.config_type() is types.GenerateContentConfig
    assert sdk_patches.shared_tls_options() == {}
    assert not any(sdk_patches.active(name) for name in sdk_patches.ALL)

    sdk_patches.install(sdk_patches.ALL - {sdk_patches.FAST_RESPONSE_PRUNING})
    assert vars(_common.BaseModel)["__contains__"] is not None
    assert sdk_remove_extra_fields_is_its_own()
    assert issubclass(sdk_patches.config_type(), types.GenerateContentConfig)
    assert sdk_patches.config_type() is not types.GenerateContentConfig
    assert "async_client_args" in sdk_patches.shared_tls_options()

    sdk_patches.install()
    sdk_patches.install()  # installing again changes nothing: one wrapper, not a wrapper of a wrapper
    assert _common._remove_extra_fields.__wrapped__.__name__ == "_remove_extra_fields"
    assert sdk_remove_extra_fields_is_its_own() is False
    assert all(sdk_patches.active(name) for name in sdk_patches.ALL)


def test_an_unknown_patch_name_is_refused(patches: None) -> None:
    with pytest.raises(ValueError, match="unknown SDK patch fast_everything"):
        sdk_patches.install({"fast_everything"})
    assert all(sdk_patches.active(name) for name in sdk_patches.ALL)  # nothing was changed


def test_membership_patch_leaves_an_sdk_contains_alone(
    patches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk_patches.install(())

    def sdk_contains(self: object, key: object) -> bool:
        return True

    monkeypatch.setattr(_common.BaseModel, "__contains__", sdk_contains, raising=False)
    sdk_patches.install()
    assert vars(_common.BaseModel)["__contains__"] is sdk_contains
    sdk_patches.install(())
    assert vars(_common.BaseModel)["__contains__"] is sdk_contains  # not ours to take out


@pytest.mark.parametrize("helper", ["_as_base_model_type", "_is_struct_type", "_remove_extra_fields"])
def test_pruning_patch_steps_aside_without_the_sdk_helpers_it_reuses(
    patches: None, monkeypatch: pytest.MonkeyPatch, helper: str
) -> None:
    sdk_patches.install(())
    sdk_own = getattr(_common, "_remove_extra_fields")  # noqa: B009
    monkeypatch.delattr(_common, helper)
    sdk_patches.install()
    assert getattr(_common, "_remove_extra_fields", None) is (
        None if helper == "_remove_extra_fields" else sdk_own
    )


def test_tls_patch_steps_aside_when_the_sdk_helper_changes(
    patches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api_client.BaseApiClient, "_ensure_aiohttp_ssl_ctx", lambda options: {"ssl": True})
    assert sdk_patches.shared_tls_options() == {}  # not an SSLContext: the SDK builds its own
    monkeypatch.delattr(_api_client.BaseApiClient, "_ensure_aiohttp_ssl_ctx")
    assert sdk_patches.shared_tls_options() == {}


def test_warm_ups_do_nothing_harmful_when_the_sdk_changes(
    patches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(types, "_GenerateContentParameters")
    settings = GenerationSettings(system="s")
    sdk_patches.warm_request_models(generate_config(settings))  # no error: nothing to warm
    monkeypatch.setattr(sdk_patches, "WARMUP_ANSWER", {"candidates": "not a list"})
    sdk_patches.warm_response_models()  # a failed warm-up is only logged


@pytest.fixture(scope="module")
def server() -> Iterator[RunningFake]:
    with running_fake() as fake:
        yield fake


async def answers(url: str) -> list[tuple]:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    settings = GenerationSettings(system="be brief", temperature=0.2, json_schema=schema)
    async with GeminiClient(
        api_key="patch-test", base_url=url, max_connections=4, timeout=10.0, settings=settings
    ) as client:
        outcomes = [await client.generate("gemini-2.5-flash", f"count {i}") for i in range(3)]
        outcomes.append(await client.generate("gemini-2.5-flash", "x [[safety]]"))
    return [(o.text, o.parsed, o.error, o.finish_reason, o.usage, o.model_version) for o in outcomes]


async def test_with_every_patch_out_the_same_requests_get_the_same_outcomes(
    patches: None, server: RunningFake
) -> None:
    patched = await answers(server.url)
    sdk_patches.install(())
    assert await answers(server.url) == patched


def test_with_every_patch_out_a_batch_result_reads_the_same(patches: None) -> None:
    answer = {
        "candidates": [
            {
                "content": {"parts": [{"text": "a", "futurePartField": 1}], "role": "model", "new": {}},
                "finishReason": "STOP",
                "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "LOW", "z": 1}],
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "futureCount": 9},
        "modelVersion": "m",
        "topLevelNew": {"x": 1},
    }
    patched = outcome_from_json(copy.deepcopy(answer), parse_json=False)
    sdk_patches.install(())
    assert outcome_from_json(copy.deepcopy(answer), parse_json=False) == patched


def test_the_benchmark_entry_runs_the_command_line_without_the_named_patch(
    patches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gembulk.__main__
    from bench import without_patch

    seen: dict[str, object] = {}

    def fake_main() -> None:
        seen["argv"] = list(sys.argv)
        seen["active"] = {name for name in sdk_patches.ALL if sdk_patches.active(name)}
        raise SystemExit(0)

    monkeypatch.setattr(gembulk.__main__, "main", fake_main)
    monkeypatch.setattr("sys.argv", ["without_patch"])
    with pytest.raises(SystemExit):
        without_patch.main(["fast_membership", "--", "run", "in.csv", "-o", "out.jsonl"])
    assert seen == {
        "argv": ["gembulk", "run", "in.csv", "-o", "out.jsonl"],
        "active": set(sdk_patches.ALL) - {"fast_membership"},
    }
    assert "__contains__" not in vars(_common.BaseModel)
    with pytest.raises(SystemExit, match="unknown patch nope"):
        without_patch.main(["nope", "--", "--version"])
