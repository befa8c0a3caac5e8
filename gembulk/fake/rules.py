"""What the real API refuses in a well-formed GenerateContentRequest: empty input, bad roles, out-of-range
settings, settings the model does not take. Each rule names the source of its message; a message not
found verbatim in a real answer is marked "inferred" and follows the shape of its attested neighbours.
"""

from __future__ import annotations

from typing import Any

from gembulk.fake.models import ModelSpec
from gembulk.fake.wire import Refusal

# "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are ..." (real 400
# bodies quoted in several public agent logs, 2025-2026): application/xml and yaml are allowed.
RESPONSE_MIME_TYPES = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
_MIME_LIST = "`text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`"
_SCHEMA_MIME_TYPES = ("application/json", "text/x.enum")
_ROLES = ("user", "model")
_MAX_STOP_SEQUENCES = 5  # documented ("up to 5"), GenerationConfig.stop_sequences
_MAX_CANDIDATES = 8  # documented range of candidateCount: 1-8


def pick(obj: Any, camel: str, snake: str) -> Any:
    """A field read in either JSON spelling (protobuf JSON takes both)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def listed(value: Any) -> list[Any]:
    """A repeated field's items: a single value stands for a one-element list, as protobuf JSON reads it."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def check_generate(
    body: dict[str, Any], spec: ModelSpec, prefix: str = "GenerateContentRequest"
) -> Refusal | None:
    """The first refusal the real API gives this (already well-formed) request for this model, or None."""
    for rule in (_contents, _settings, _roles, _empty_input):
        found = rule(body, prefix)
        if found is not None:
            return found
    config = pick(body, "generationConfig", "generation_config") or {}
    return _model_rules(config, spec)


def _contents(body: dict[str, Any], prefix: str) -> Refusal | None:
    contents = listed(body.get("contents"))
    if not contents:
        return Refusal(400, f"* {prefix}.contents: contents is not specified\n")
    for index, content in enumerate(contents):
        if not listed(content.get("parts")):
            # Quoted by client code that handles it and by a fake built from a live answer.
            return Refusal(400, f"* {prefix}.contents[{index}].parts: contents.parts must not be empty.\n")
    return None


def _settings(body: dict[str, Any], prefix: str) -> Refusal | None:
    config = pick(body, "generationConfig", "generation_config") or {}
    where = f"* {prefix}.generation_config"
    lines = []
    temperature = _number(config.get("temperature"))
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        # Live probe, 2026-08-27: `temperature: 5` -> exactly this line.
        lines.append(f"{where}.temperature: temperature must be in the range [0.0, 2.0].\n")
    top_p = _number(pick(config, "topP", "top_p"))
    if top_p is not None and not 0.0 <= top_p <= 1.0:
        lines.append(f"{where}.top_p: top_p must be in the range [0.0, 1.0].\n")  # inferred
    count = _number(pick(config, "candidateCount", "candidate_count"))
    if count is not None and not 1 <= count <= _MAX_CANDIDATES:
        lines.append(f"{where}.candidate_count: candidate_count must be in the range [1, 8].\n")  # inferred
    if len(listed(pick(config, "stopSequences", "stop_sequences"))) > _MAX_STOP_SEQUENCES:
        lines.append(f"{where}.stop_sequences: at most 5 stop sequences are allowed.\n")  # inferred
    mime = pick(config, "responseMimeType", "response_mime_type")
    if mime is not None and mime not in RESPONSE_MIME_TYPES:
        lines.append(f"{where}.response_mime_type: allowed mimetypes are {_MIME_LIST}.\n")
    elif _has_schema(config) and mime not in _SCHEMA_MIME_TYPES:
        # inferred: a schema needs JSON (or enum) output; the real wording was not found.
        lines.append(
            f"{where}.response_mime_type: response_mime_type must be application/json or text/x.enum "
            "when a response schema is set.\n"
        )
    return Refusal(400, "".join(lines)) if lines else None


def _has_schema(config: dict[str, Any]) -> bool:
    return any(
        pick(config, camel, snake) is not None
        for camel, snake in (
            ("responseSchema", "response_schema"),
            ("responseJsonSchema", "response_json_schema"),
        )
    )


def _roles(body: dict[str, Any], prefix: str) -> Refusal | None:
    for content in listed(body.get("contents")):
        role = content.get("role")
        if role not in (None, "", *_ROLES):
            # A live 400 quoted by many clients; the Gemini API takes a content without a role.
            return Refusal(400, "Please use a valid role: user, model.")
    return None


def _empty_input(body: dict[str, Any], prefix: str) -> Refusal | None:
    for content in listed(body.get("contents")):
        for part in listed(content.get("parts")):
            if not isinstance(part, dict) or any(key != "text" for key in part) or part.get("text"):
                return None
    # A live 400 for a prompt whose only text is "" (quoted in several client fixes).
    return Refusal(400, "Request has empty input.")


def _model_rules(config: dict[str, Any], spec: ModelSpec) -> Refusal | None:
    penalties = (
        pick(config, "presencePenalty", "presence_penalty"),
        pick(config, "frequencyPenalty", "frequency_penalty"),
    )
    if not spec.penalties and any(p is not None for p in penalties):
        return Refusal(400, f"Penalty is not enabled for models/{spec.name}")  # 3f, vercel/ai issue-8943
    thinking = pick(config, "thinkingConfig", "thinking_config") or {}
    budget = pick(thinking, "thinkingBudget", "thinking_budget")
    level = pick(thinking, "thinkingLevel", "thinking_level")
    if budget is not None and level is not None:
        return Refusal(400, "You can only set only one of thinking budget and thinking level.")  # 3f
    if budget is not None and _number(budget) == 0 and spec.thinking_required:
        # Quoted from live answers of 2.5 Pro in several public projects.
        return Refusal(400, "Budget 0 is invalid. This model only works in thinking mode.")
    if level is not None and spec.thinking_levels and str(level).upper() not in spec.thinking_levels:
        return Refusal(
            400,
            f"Thinking level {str(level).upper()} is not supported for this model. "
            "Please retry with other thinking level.",  # 3f, google-thinking-level-minimal-unsupported.json
        )
    return None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
