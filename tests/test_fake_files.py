"""The fake Files API (resumable upload, get, list, download, delete) through the real google-genai SDK."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from google.genai import errors, types

from tests.fake_support import Clients, RunningFake, running_fake


@pytest.fixture(scope="module")
def api() -> Iterator[RunningFake]:
    with running_fake() as server:
        yield server


@pytest.fixture
def clients(api: RunningFake) -> Iterator[Clients]:
    made = Clients(api.url)
    yield made
    made.close()


def test_upload_get_list_download_delete(api: RunningFake, clients: Clients, tmp_path: Path) -> None:
    client = clients(api_version="v1beta")
    data = b'{"key": "a", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n'
    path = tmp_path / "input.jsonl"
    path.write_bytes(data)
    before = api.stats()["files_uploaded"]
    config = types.UploadFileConfig(mime_type="application/jsonl", display_name="my-input")
    uploaded = client.files.upload(file=path, config=config)
    assert re.fullmatch(r"files/[a-z0-9]{12}", uploaded.name)
    assert (uploaded.display_name, uploaded.mime_type) == ("my-input", "application/jsonl")
    assert uploaded.size_bytes == len(data)
    assert uploaded.state == types.FileState.ACTIVE
    assert uploaded.source == types.FileSource.UPLOADED
    assert uploaded.uri == f"{api.url}/v1beta/files/{uploaded.name[6:]}"
    assert base64.b64decode(uploaded.sha256_hash).decode() == hashlib.sha256(data).hexdigest()
    assert uploaded.expiration_time > uploaded.create_time

    fetched = client.files.get(name=uploaded.name)
    assert fetched.name == uploaded.name and fetched.size_bytes == len(data)
    assert client.files.download(file=uploaded.name) == data
    stats = api.stats()
    assert stats["files_uploaded"] == before + 1
    assert stats["uploaded_bytes"] >= len(data)

    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError) as caught:
        client.files.get(name=uploaded.name)
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
    assert caught.value.message == (
        f"You do not have permission to access the File {uploaded.name[6:]} or it may not exist."
    )


def test_list_paginates(clients: Clients, tmp_path: Path) -> None:
    client = clients()
    names = set()
    for i in range(5):
        path = tmp_path / f"f{i}.txt"
        path.write_text(f"file {i}")
        names.add(client.files.upload(file=path).name)
    pager = client.files.list(config={"page_size": 2})
    assert len(pager.page) == 2
    listed = {f.name for f in pager}
    assert names <= listed


def test_multi_chunk_upload_and_the_download_path(api: RunningFake, clients: Clients, tmp_path: Path) -> None:
    data = bytes(range(256)) * (9 * 4096 + 1)  # a bit over 9 MiB: two 8 MiB-granularity chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    client = clients()
    uploaded = client.files.upload(
        file=path, config=types.UploadFileConfig(mime_type="application/octet-stream")
    )
    assert uploaded.size_bytes == len(data)
    assert client.files.download(file=uploaded.name) == data
    # The real service also serves results under /download/{v}/files/{id}:download?alt=media.
    raw = httpx2.get(
        f"{api.url}/download/v1beta/{uploaded.name}:download",
        params={"alt": "media"},
        headers={"x-goog-api-key": "k"},
    )
    assert raw.status_code == 200 and raw.content == data


async def test_async_upload_over_aiohttp(clients: Clients, tmp_path: Path) -> None:
    path = tmp_path / "async.jsonl"
    path.write_bytes(b"{}\n")
    client = clients()
    uploaded = await client.aio.files.upload(file=path, config=types.UploadFileConfig(mime_type="jsonl"))
    assert uploaded.mime_type == "jsonl"
    assert await client.aio.files.download(file=uploaded.name) == b"{}\n"
    await client.aio.aclose()


def test_upload_protocol_on_the_wire(api: RunningFake) -> None:
    start = httpx2.post(
        f"{api.url}/upload/v1beta/files",
        headers={
            "x-goog-api-key": "k",
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "6",
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
        json={"file": {"displayName": "wire"}},
    )
    assert start.status_code == 200 and start.content == b""
    assert start.headers["x-goog-upload-status"] == "active"
    assert start.headers["x-goog-upload-chunk-granularity"] == "8388608"
    url = start.headers["x-goog-upload-url"]
    assert url.startswith(f"{api.url}/upload/v1beta/files?upload_id=")
    first = httpx2.post(
        url, content=b"abc", headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}
    )
    assert first.headers["x-goog-upload-status"] == "active"
    # A re-sent chunk at an earlier offset replaces what followed it; no API key is needed on the upload URL.
    again = httpx2.post(
        url, content=b"abX", headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}
    )
    assert again.status_code == 200
    final = httpx2.post(
        url,
        content=b"def",
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "3"},
    )
    assert final.headers["x-goog-upload-status"] == "final"
    body = final.json()["file"]
    assert (body["displayName"], body["mimeType"], body["sizeBytes"]) == ("wire", "text/plain", "6")
    assert body["createTime"].endswith("Z") and body["expirationTime"].endswith("Z")
    got = httpx2.get(
        f"{api.url}/v1beta/{body['name']}:download", params={"alt": "media"}, headers={"x-goog-api-key": "k"}
    )
    assert got.content == b"abXdef"
    gap = httpx2.post(
        url, content=b"x", headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}
    )
    assert gap.status_code == 404  # the session ended with finalize
