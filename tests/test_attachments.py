"""Units of the media feature: attachment references, the local-file check, inline choice, ordering,
cache keys, the request JSON, and the fake's reading of media parts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gembulk.attachments import AttachmentCheck, AttachSpec, check_columns, identity, media_type
from gembulk.cache import cache_key
from gembulk.client import GenerationSettings
from gembulk.client.request import request_json
from gembulk.errors import InputError, UsageError
from gembulk.fake.content import MEDIA_TOKENS, BadRequest, count_tokens, parse_request, with_files
from gembulk.media import AttachmentFailed, MediaResolver, _Loaded, resolve_in_order
from gembulk.records import Attachment, InputRow, MediaPart, PromptRequest, RowError
from gembulk.retry import RetryPolicy


def row(index: int, **fields: object) -> InputRow:
    return InputRow(id=str(index), fields=dict(fields), line=index + 1, index=index)


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("a.PNG", "image/png"),
        ("x/y.jpeg", "image/jpeg"),
        ("clip.mov", "video/mov"),
        ("talk.mp3", "audio/mp3"),
        ("doc.pdf", "application/pdf"),
        ("notes.md", "text/md"),
        ("/img/photo.webp", "image/webp"),
        ("no-extension", None),
    ],
)
def test_media_type_from_the_extension(name: str, mime: str | None) -> None:
    assert media_type(name) == mime


def test_references_are_urls_file_names_or_local_paths(tmp_path: Path) -> None:
    (tmp_path / "beside.png").write_bytes(b"x")
    spec = AttachSpec.for_input(("a", "b", "c", "d"), str(tmp_path / "rows.csv"))
    cells = {"a": "https://cdn.example/p/cat.jpg?size=2", "b": "files/abc123", "c": "beside.png"}
    found = spec.of(row(1, **cells, d="HTTP://CDN.example/x.PNG"))
    root = str(tmp_path.resolve())
    assert found == (
        Attachment("url", "https://cdn.example/p/cat.jpg?size=2", "a", "image/jpeg"),
        Attachment("file", "files/abc123", "b"),
        # Relative to the attachment root: by default the input file's folder.
        Attachment("path", str(tmp_path.resolve() / "beside.png"), "c", "image/png", root=root),
        Attachment("url", "HTTP://CDN.example/x.PNG", "d", "image/png"),  # any case is a URL
    )


def test_blank_cells_and_missing_jsonl_fields_attach_nothing() -> None:
    spec = AttachSpec(("a", "b"), "/")
    assert spec.of(row(1, a="  ", b=None)) == ()
    assert spec.of(row(2)) == ()
    listed = spec.of(row(3, a=["/x.png", "", "/y.png"]))
    assert [a.value for a in listed] == ["/x.png", "/y.png"]


def test_attach_columns_must_exist_in_csv_but_not_in_every_jsonl_row() -> None:
    spec = AttachSpec(("image",), "/")
    with pytest.raises(InputError, match="no column 'image'"):
        check_columns(spec, ("id", "text"), "csv", "in.csv")
    check_columns(spec, ("id", "text"), "jsonl", "in.jsonl")
    with pytest.raises(UsageError, match="txt"):
        check_columns(spec, ("prompt",), "txt", "in.txt")


def test_the_local_file_check_names_the_first_rows_and_counts_the_rest(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(b"x")
    (tmp_path / "odd.xyz123").write_bytes(b"x")
    spec = AttachSpec(("m",), str(tmp_path.resolve()))
    check = AttachmentCheck("in.csv")
    names = ["ok.png", "odd.xyz123"] + [f"gone{i}.png" for i in range(8)]
    for index, name in enumerate(names, 1):
        check.check(row(index, m=name), spec.of(row(index, m=name)))
    with pytest.raises(InputError) as raised:
        check.raise_if_any()
    message = raised.value.message
    assert "line 3 (id 2)" in message and "cannot tell its media type" in message
    assert "gone0.png not found" in message and "and 4 more" in message  # 9 problems, 5 named
    AttachmentCheck("in.csv").raise_if_any()  # no problem, no error


def test_identity_is_the_content_for_files_and_the_reference_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"first")
    local = Attachment("path", str(path.resolve()), "m", "image/png", root=str(tmp_path.resolve()))
    assert identity(local) == "sha256:" + hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second!")  # another size: the remembered digest is not reused
    assert identity(local) == "sha256:" + hashlib.sha256(b"second!").hexdigest()
    assert identity(Attachment("url", "https://x/y.png", "m")) == "url:https://x/y.png"


def test_cache_keys_differ_by_attachment_and_stay_the_same_without_one() -> None:
    request = request_json(GenerationSettings(), "hi")
    plain = cache_key("gemini-2.5-flash", request)
    assert cache_key("gemini-2.5-flash", request, []) == plain
    assert cache_key("gemini-2.5-flash", request, ["sha256:aa"]) != plain
    assert cache_key("gemini-2.5-flash", request, ["sha256:aa"]) != cache_key(
        "gemini-2.5-flash", request, ["sha256:bb"]
    )


def test_request_json_puts_media_before_the_text() -> None:
    media = (
        MediaPart("image/png", data=b"\x00\x01"),
        MediaPart("video/mp4", file_uri="http://h/v1beta/files/x"),
    )
    parts = request_json(GenerationSettings(), "describe", media)["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"\x00\x01").decode()}},
        {"fileData": {"mimeType": "video/mp4", "fileUri": "http://h/v1beta/files/x"}},
        {"text": "describe"},
    ]


def loaded(size: int) -> _Loaded:
    return _Loaded(Attachment("path", f"/{size}", "m", "image/png", root="/"), "image/png", size)


def test_the_smallest_attachments_go_inline_within_the_limit() -> None:
    resolver = MediaResolver(None, RetryPolicy(), inline_limit=100, downloads=4)  # type: ignore[arg-type]
    items = [loaded(80), loaded(10), loaded(30), loaded(50)]
    assert [i.size for i in resolver._choose_inline(items)] == [10, 30, 50]
    nothing = MediaResolver(None, RetryPolicy(), inline_limit=0, downloads=4)  # type: ignore[arg-type]
    assert nothing._choose_inline(items) == []


class _SlowResolver:
    """Resolves requests after a delay that shrinks with the row number, so they finish in reverse."""

    async def resolve(self, request: PromptRequest) -> PromptRequest:
        await asyncio.sleep(0.001 * (10 - request.row.index))
        if request.row.index == 4:
            raise AttachmentFailed(RowError("ATTACHMENT_DOWNLOAD_FAILED", "gone"))
        return request


async def test_resolve_in_order_keeps_input_order_and_reports_failed_rows() -> None:
    async def requests() -> AsyncIterator[PromptRequest]:
        for index in range(1, 8):
            yield PromptRequest(row(index), f"p{index}", "m", (Attachment("url", "u", "c"),))

    results = [item async for item in resolve_in_order(requests(), _SlowResolver(), 3)]  # type: ignore[arg-type]
    assert [request.row.index for request, _ in results] == list(range(1, 8))
    assert isinstance(results[3][1], RowError) and results[3][1].status == "ATTACHMENT_DOWNLOAD_FAILED"
    assert all(isinstance(resolved, PromptRequest) for i, (_, resolved) in enumerate(results) if i != 3)


def media_body(*parts: dict[str, object]) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [*parts, {"text": "look"}]}]}


def test_the_fake_reads_url_safe_and_standard_base64_and_counts_media_tokens() -> None:
    data = bytes(range(250)) * 3  # holds bytes whose base64 differs between the two alphabets
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(data).decode().rstrip("=")
        prompt = parse_request(media_body({"inline_data": {"mime_type": "image/png", "data": text}}))
        assert prompt.media[0].size == len(data)
        assert prompt.media[0].sha256 == hashlib.sha256(data).hexdigest()
        assert prompt.tokens == count_tokens("look") + MEDIA_TOKENS


def test_the_fake_refuses_unsupported_types_and_bad_base64() -> None:
    with pytest.raises(BadRequest, match="Unsupported MIME type: application/x-thing"):
        parse_request(media_body({"inlineData": {"mimeType": "application/x-thing", "data": "AAAA"}}))
    with pytest.raises(BadRequest, match="Base64 decoding failed"):
        parse_request(media_body({"inlineData": {"mimeType": "image/png", "data": "!!!"}}))


def test_the_fake_resolves_file_references_or_denies_them() -> None:
    prompt = parse_request(
        media_body({"file_data": {"file_uri": "http://h/v1beta/files/abc", "mime_type": ""}})
    )
    stored = {"abc": ("video/mp4", b"movie")}
    resolved = with_files(prompt, stored.get)
    assert not isinstance(resolved, str)
    assert resolved.media[0].mime_type == "video/mp4" and resolved.media[0].size == 5
    missing = with_files(parse_request(media_body({"fileData": {"fileUri": "files/nope"}})), stored.get)
    assert missing == "You do not have permission to access the File nope or it may not exist."


def test_the_fake_refuses_a_request_over_20_mb() -> None:
    import urllib.error
    import urllib.request

    from tests.fake_support import running_fake

    big = base64.b64encode(b"\0" * (16 * 1024 * 1024)).decode()  # 21.3 MB once base64-encoded
    body = json.dumps(media_body({"inlineData": {"mimeType": "image/png", "data": big}})).encode()
    with running_fake() as api:
        request = urllib.request.Request(
            f"{api.url}/v1beta/models/gemini-2.5-flash:generateContent",
            data=body,
            headers={"x-goog-api-key": "k", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        answer = json.loads(refused.value.read())
    assert refused.value.code == 400
    assert answer["error"]["message"] == "Request payload size exceeds the limit: 20971520 bytes."
