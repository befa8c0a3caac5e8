"""Raw HTTP to the fake, the way Google's REST docs call the API (curl with x-goog-api-key, v1beta paths)."""

from __future__ import annotations

from typing import Any

import httpx2

MODEL = "gemini-2.5-flash"
EMBED_MODEL = "gemini-embedding-001"
KEY = "rest-key"


class Rest:
    """A base URL and an API key; `post`/`get`/... return the httpx2 response."""

    def __init__(self, url: str, key: str = KEY) -> None:
        self.url = url
        self.key = key

    def request(self, method: str, path: str, body: Any = None, **options: Any) -> httpx2.Response:
        headers = {
            "x-goog-api-key": self.key,
            "Content-Type": "application/json",
            **options.pop("headers", {}),
        }
        if body is not None and not isinstance(body, bytes):
            options["json"] = body
        elif body is not None:
            options["content"] = body
        return httpx2.request(method, self.url + path, headers=headers, timeout=60, **options)

    def post(self, path: str, body: Any = None, **options: Any) -> httpx2.Response:
        return self.request("POST", path, body, **options)

    def get(self, path: str, **options: Any) -> httpx2.Response:
        return self.request("GET", path, **options)

    def generate(self, body: Any, model: str = MODEL, verb: str = "generateContent") -> httpx2.Response:
        return self.post(f"/v1beta/models/{model}:{verb}", body)


def text_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The `error` object of a Google error body, checking the envelope on the way."""
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.text.startswith('{\n  "error": {\n') and response.text.endswith("}\n")  # 0.1: pretty
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert error["code"] == response.status_code
    return error
