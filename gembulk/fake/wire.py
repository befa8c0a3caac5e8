"""HTTP response helpers of the fake API: compact JSON for successes, Google error bodies for failures."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json; charset=UTF-8"
_JSON_HEADERS = {"Content-Type": JSON_TYPE}
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Messages the real service sends for transient failures.
TRANSIENT_MESSAGES = {
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
# Google's front end answers 502 with its HTML error page, not a JSON body.
BAD_GATEWAY_HTML = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    '  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">\n'
    "  <title>Error 502 (Server Error)!!1</title>\n  <p><b>502.</b> "
    "<ins>That\u2019s an error.</ins>\n  <p>The server encountered a temporary error and could not complete "
    "your request.<p>Please try again in 30 seconds.  <ins>That\u2019s all we know.</ins>\n"
)
UNREGISTERED_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
BAD_KEY_MESSAGE = "API key not valid. Please pass a valid API key."


def compact(obj: Any) -> bytes:
    """Compact JSON plus a trailing newline: the cheap encoding for the hot path."""
    return (_COMPACT(obj) + "\n").encode()


def ok(obj: Any) -> web.Response:
    return web.Response(body=compact(obj), headers=_JSON_HEADERS)


def error_body(code: int, message: str, status: str | None = None, details: list[Any] | None = None) -> Any:
    err: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        err["details"] = details
    return {"error": err}


def pretty(code: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """An error response, pretty-printed with 2-space indent and a trailing newline like the real API."""
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    return web.Response(status=code, body=text.encode(), headers={**_JSON_HEADERS, **(headers or {})})


def error(
    code: int, message: str, status: str | None = None, details: list[Any] | None = None
) -> web.Response:
    return pretty(code, error_body(code, message, status, details))


def transient(code: int) -> web.Response:
    """The real response for a transient failure code (500, 502, 503, 504)."""
    if code == 502:
        return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html", charset="UTF-8")
    return error(code, TRANSIENT_MESSAGES[code])


def bad_key() -> web.Response:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": BAD_KEY_MESSAGE,
        },
    ]
    return error(400, BAD_KEY_MESSAGE, details=details)


def not_found_path(path: str) -> web.Response:
    return error(404, f"The requested URL {path} was not found on this server.")


def file_missing(file_id: str) -> web.Response:
    return error(403, f"You do not have permission to access the File {file_id} or it may not exist.")


def invalid_json_message(raw: bytes) -> str:
    snippet = raw[:60].decode("utf-8", "replace")
    return f"Invalid JSON payload received. Unexpected token.\n{snippet}\n^"


def invalid_json(raw: bytes) -> web.Response:
    return error(400, invalid_json_message(raw))


# google.rpc.Code numbers of the statuses a refusal can carry (batch error lines print the number).
GRPC_CODES = {
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the real API would refuse a request: HTTP code, message, status name and google.rpc details."""

    code: int
    message: str
    status: str = ""
    details: tuple[Any, ...] = ()

    @property
    def status_name(self) -> str:
        return self.status or STATUS_NAMES.get(self.code, "UNKNOWN")

    def response(self) -> web.Response:
        return error(self.code, self.message, self.status_name, list(self.details))

    def batch_error(self) -> dict[str, Any]:
        """The google.rpc.Status of a refused batch request: the gRPC code number, no details (the SDK
        types JobError.details as a list of strings, and objects there make batches.get() raise)."""
        status = self.status_name
        return {"code": GRPC_CODES.get(status, 2), "message": self.message.strip(), "status": status}


def parse_json(raw: bytes) -> Any:
    """json.loads that turns every decoding failure into ValueError.

    Google's front end also reads single-quoted JSON, which its own curl examples send (the Files API
    upload start, `-d "{'file': {'display_name': 'x'}}"`), so a body that is a Python-style literal
    of dicts, lists, strings and numbers is read too.
    """
    try:
        return json.loads(raw) if raw else {}
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    except ValueError:
        if b"'" not in raw or len(raw) > 1 << 20:
            raise
        try:
            value = ast.literal_eval(raw.decode())
        except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
            raise ValueError("not JSON") from None
        if not isinstance(value, dict):
            raise ValueError("not a JSON object") from None
        return value
