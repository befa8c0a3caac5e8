"""Strict reading of request bodies: unknown names and wrong value types, with the real API's error bodies.

Google's front end parses a request as protobuf JSON before the service sees it: every field name it does
not know is refused with 'Invalid JSON payload received. Unknown name "foo" at 'generation_config': Cannot
find field.' (gemini-real-responses.md, 3f; at the top level the "at" part is absent and the violation
names no field, as in a live body quoted in nashsu/llm_wiki#49), and every value of the wrong type with
"Invalid value at 'generation_config.temperature' (TYPE_FLOAT), "hot"". All violations of one request are
reported together, one per line, each also in a google.rpc.BadRequest field violation. Both JSON spellings
of a name are accepted (camelCase and the protobuf snake_case), a single value stands for a one-element
list, and null means "not set", as in protobuf JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from gembulk.fake import schema
from gembulk.fake.wire import Refusal

_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_PROTO_PACKAGE = "type.googleapis.com/google.ai.generativelanguage"
_SCALAR_TYPES = {
    "string": "TYPE_STRING",
    "int": "TYPE_INT32",
    "float": "TYPE_FLOAT",
    "bool": "TYPE_BOOL",
    "bytes": "TYPE_BYTES",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One field violation: the path it concerns ("" for the top level) and its description."""

    field: str
    description: str


def check(message: str, body: Any, version: str = "v1beta") -> Refusal | None:
    """The 400 for a body that does not parse as `message` (e.g. "GenerateContentRequest"), or None."""
    schema.build()
    found: list[Violation] = []
    _message(schema.MESSAGES[message], body, "", version or "v1beta", found)
    return refusal(found) if found else None


def refusal(found: list[Violation]) -> Refusal:
    violations = []
    for v in found:
        violations.append(
            {"field": v.field, "description": v.description} if v.field else {"description": v.description}
        )
    details = ({"@type": _BAD_REQUEST, "fieldViolations": violations},)
    return Refusal(400, "\n".join(v.description for v in found), "INVALID_ARGUMENT", details)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _message(message: schema.Message, value: Any, path: str, version: str, found: list[Violation]) -> None:
    if not isinstance(value, dict):
        found.append(_invalid(path, f"{_PROTO_PACKAGE}.{version}.{message.name}", value))
        return
    for key, item in value.items():
        spec = message.fields.get(key)
        if spec is None:
            where = f" at '{path}'" if path else ""
            text = f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.'
            found.append(Violation(path, text))
            continue
        if item is None:
            continue
        sub = _join(path, spec.name)
        if spec.repeated:
            items = item if isinstance(item, list) else [item]
            for index, element in enumerate(items):
                _value(spec, element, f"{sub}[{index}]", version, found)
        else:
            _value(spec, item, sub, version, found)


def _value(spec: schema.Field, value: Any, path: str, version: str, found: list[Violation]) -> None:
    kind = spec.kind
    if kind == "message":
        _message(schema.MESSAGES[spec.message], value, path, version, found)
    elif kind == "map":
        if not isinstance(value, dict):
            found.append(_invalid(path, f"{_PROTO_PACKAGE}.{version}.{spec.type_name}", value))
            return
        target = schema.MESSAGES[spec.message]
        for index, element in enumerate(value.values()):
            _message(target, element, f"{path}[{index}].value", version, found)
    elif kind == "enum":
        if not _enum_ok(spec, value):
            found.append(_invalid(path, f"{_PROTO_PACKAGE}.{version}.{spec.type_name}", value))
    elif kind == "bytes":
        if not isinstance(value, str):
            found.append(_invalid(path, "TYPE_BYTES", value))
        elif not _base64_ok(value):
            found.append(Violation(path, f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed"))
    elif kind in _SCALAR_TYPES and not _scalar_ok(kind, value):
        found.append(_invalid(path, _SCALAR_TYPES[kind], value))


def _invalid(path: str, type_name: str, value: Any) -> Violation:
    shown = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Violation(path, f"Invalid value at '{path}' ({type_name}), {shown}")


def _enum_ok(spec: schema.Field, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    # The SDK's enums are case-insensitive and the front end takes "object" for OBJECT in schemas.
    return isinstance(value, str) and value.upper() in spec.enum


def _scalar_ok(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return False
    if kind == "int":
        # protobuf JSON takes an integer as a number with no fraction, or as a string of digits.
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return math.isfinite(value) and value.is_integer()
        return isinstance(value, str) and value.strip().lstrip("-").isdigit()
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _base64_ok(text: str) -> bool:
    try:
        decode_bytes(text)
    except (binascii.Error, ValueError):
        return False
    return True


def decode_bytes(text: str) -> bytes:
    """protobuf-JSON bytes: standard or URL-safe base64 (the SDK sends URL-safe), padding optional."""
    standard = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
