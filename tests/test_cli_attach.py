"""`--attach`: media in rows (local files inline or uploaded, URLs, files/… names), online and batch, e2e."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai

from gembulk.fake.content import media_note
from tests.cli_support import TEST_KEY, FakeAPI, by_id, read_jsonl, run_cli, write_csv
from tests.media_server import MediaSite, media_site


@pytest.fixture
def site() -> Iterator[MediaSite]:
    with media_site() as served:
        yield served


def blob(seed: int, size: int) -> bytes:
    """Distinct, reproducible bytes (their hash identifies them in the fake's answers)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def note(mime: str, data: bytes) -> str:
    return media_note(mime, len(data), hashlib.sha256(data).hexdigest())


def fake_files(fake: FakeAPI) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{fake.url}/v1beta/files?pageSize=100&key={TEST_KEY}", timeout=10) as answer:
        return json.loads(answer.read()).get("files", [])


def test_local_files_go_inline_with_their_bytes_and_type(fake: FakeAPI, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    pictures = {i: blob(i, 900 + i) for i in range(1, 4)}
    for i, data in pictures.items():
        (images / f"p{i}.png").write_bytes(data)
    (tmp_path / "scan.pdf").write_bytes(blob(9, 2000))
    rows = [
        {
            "id": str(i),
            "text": f"describe {i}",
            "image": f"images/p{i}.png",
            "doc": "scan.pdf" if i == 1 else "",
        }
        for i in pictures
    ]
    path = write_csv(tmp_path / "rows.csv", rows)
    out = tmp_path / "out.jsonl"
    # Relative paths start from the input file's folder (the run starts in another directory).
    result = run_cli(
        ["run", str(path), "-t", "{text}", "--attach", "image", "--attach", "doc", "-o", str(out)],
        fake.url,
        cwd=tmp_path.parent,
    )
    assert result.returncode == 0, result.stderr
    records = by_id(read_jsonl(out))
    for i, data in pictures.items():
        # Media first, then the text; each part's bytes arrived intact (the fake names their hash).
        assert note("image/png", data) in records[str(i)]["response"]
        assert records[str(i)]["response"].startswith(f"echo: describe {i} ")
    assert records["1"]["response"].endswith(note("application/pdf", blob(9, 2000)))
    stats = fake.stats()
    assert stats["inline_parts"] == 4 and stats["file_parts"] == 0
    assert stats["inline_bytes"] == sum(len(d) for d in pictures.values()) + 2000
    assert stats["files_uploaded"] == 0
    # promptTokenCount counts each medium (258 tokens) beside the text.
    assert records["1"]["usage"]["prompt_tokens"] > 2 * 258


def test_large_files_are_uploaded_once_per_content_and_deleted_after(fake: FakeAPI, tmp_path: Path) -> None:
    video = blob(1, 50_000)
    (tmp_path / "a.mp4").write_bytes(video)
    (tmp_path / "copy-of-a.mp4").write_bytes(video)  # the same bytes under another name: one upload
    (tmp_path / "small.png").write_bytes(blob(2, 500))
    rows = [
        {"id": "1", "clip": "a.mp4", "thumb": "small.png"},
        {"id": "2", "clip": "copy-of-a.mp4", "thumb": "small.png"},
        {"id": "3", "clip": "a.mp4", "thumb": ""},
    ]
    path = write_csv(tmp_path / "rows.csv", rows)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "what happens in clip {id}?", "--attach", "clip", "--attach", "thumb"]
    before = fake_files(fake)
    result = run_cli([*args, "--inline-limit", "10KB", "-o", str(out)], fake.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = by_id(read_jsonl(out))
    assert all(note("video/mp4", video) in r["response"] for r in records.values())
    assert note("image/png", blob(2, 500)) in records["1"]["response"]
    stats = fake.stats()
    assert stats["files_uploaded"] == 1 and stats["uploaded_bytes"] == len(video)
    assert stats["file_parts"] == 3 and stats["inline_parts"] == 2  # the small one still goes inline
    assert fake_files(fake) == before  # an online run deletes what it uploaded


def test_files_names_are_referenced_and_a_missing_one_fails_its_row(fake: FakeAPI, tmp_path: Path) -> None:
    audio = blob(3, 4000)
    (tmp_path / "talk.mp3").write_bytes(audio)
    sdk = genai.Client(api_key=TEST_KEY, http_options={"base_url": fake.url})
    uploaded = sdk.files.upload(file=str(tmp_path / "talk.mp3"), config={"mime_type": "audio/mp3"})
    rows = [{"id": "1", "media": uploaded.name}, {"id": "2", "media": "files/doesnotexist"}]
    out = tmp_path / "out.jsonl"
    path = write_csv(tmp_path / "rows.csv", rows)
    result = run_cli(["run", str(path), "-t", "summarise", "--attach", "media", "-o", str(out)], fake.url)
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert note("audio/mp3", audio) in records["1"]["response"]
    assert records["2"]["error"]["status"] == "ATTACHMENT_NOT_FOUND"
    assert "files/doesnotexist" in records["2"]["error"]["message"]
    assert fake.stats()["generate_requests"] == 1  # the failed row was never sent
    assert uploaded.name in {f["name"] for f in fake_files(fake)}  # the user's own file is left alone
    sdk.files.delete(name=uploaded.name)


def test_urls_are_downloaded_and_a_failing_url_fails_only_its_row(
    fake: FakeAPI, site: MediaSite, tmp_path: Path
) -> None:
    pictures = {i: blob(10 + i, 700) for i in range(1, 5)}
    urls = {i: site.add(f"/img/{i}", data, "image/jpeg; charset=binary") for i, data in pictures.items()}
    site.flaky["/img/2"] = 1  # one 503 first: retried, then served
    rows = [{"id": str(i), "url": url} for i, url in urls.items()]
    rows.append({"id": "missing", "url": f"{site.url}/gone.png"})
    path = write_csv(tmp_path / "rows.csv", rows)
    out = tmp_path / "out.jsonl"
    # The test server is on 127.0.0.1: a private address, fetched only with --allow-private-urls.
    args = ["run", str(path), "-t", "caption {id}", "--attach", "url", "-o", str(out), "--allow-private-urls"]
    result = run_cli(args, fake.url)
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    for i, data in pictures.items():
        assert records[str(i)]["error"] is None
        assert note("image/jpeg", data) in records[str(i)]["response"]  # the answer's Content-Type
    failed = records["missing"]["error"]
    assert failed["status"] == "ATTACHMENT_DOWNLOAD_FAILED" and failed["code"] == 404
    assert "gone.png" in failed["message"]
    assert site.hits["/img/2"] == 2
    assert fake.stats()["generate_requests"] == 4

    # The failed row is retried by the next run; the finished ones are not downloaded again.
    site.add("/gone.png", blob(99, 300))
    again = run_cli(args, fake.url)
    assert again.returncode == 0, again.stderr
    assert by_id(read_jsonl(out))["missing"]["error"] is None
    assert site.hits["/img/1"] == 1


def test_a_missing_local_file_is_refused_before_anything_is_sent(fake: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "here.png").write_bytes(b"png")
    rows = [{"id": f"r{i}", "image": "here.png" if i % 2 else f"gone{i}.png"} for i in range(1, 15)]
    path = write_csv(tmp_path / "rows.csv", rows)
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    result = run_cli(
        ["run", str(path), "-t", "x", "--attach", "image", "-o", str(out)], fake.url, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "line 3 (id r2)" in lines[0] and "gone2.png not found" in lines[0] and "and 2 more" in lines[0]
    assert "Traceback" not in result.stderr
    assert out.read_text() == "precious\n"
    assert fake.stats()["generate_requests"] == 0 and fake.stats()["files_uploaded"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attach", "picture"], "no column 'picture' named by --attach"),
        (["--attach", "image", "--inline-limit", "lots"], "--inline-limit"),
        (["--attach", "image", "--downloads", "0"], "--downloads"),
    ],
)
def test_bad_attach_options_are_refused(fake: FakeAPI, tmp_path: Path, args: list[str], message: str) -> None:
    path = write_csv(tmp_path / "rows.csv", [{"id": "1", "image": ""}])
    result = run_cli(["run", str(path), "-t", "x", *args], fake.url)
    assert result.returncode == 2 and message in result.stderr
    assert fake.stats()["generate_requests"] == 0


def test_jsonl_rows_may_list_several_attachments_or_none(fake: FakeAPI, tmp_path: Path) -> None:
    for name, seed in (("a.png", 1), ("b.webp", 2)):
        (tmp_path / name).write_bytes(blob(seed, 100))
    lines = [
        {"id": "both", "prompt": "compare", "media": ["a.png", "b.webp"]},
        {"id": "none", "prompt": "just text"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli(["run", str(path), "--attach", "media"], fake.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = by_id([json.loads(line) for line in result.stdout.splitlines()])
    expected = f"echo: compare {note('image/png', blob(1, 100))} {note('image/webp', blob(2, 100))}"
    assert records["both"]["response"] == expected
    assert records["none"]["response"] == "echo: just text"


def test_batch_lines_reference_uploaded_files(fake: FakeAPI, site: MediaSite, tmp_path: Path) -> None:
    (tmp_path / "local.png").write_bytes(blob(5, 600))
    remote = blob(6, 800)
    rows = [
        {"id": "1", "media": "local.png"},
        {"id": "2", "media": site.add("/r.png", remote)},
        {"id": "3", "media": f"{site.url}/broken.png"},
        {"id": "4", "media": "local.png"},
    ]
    path = write_csv(tmp_path / "rows.csv", rows)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "tag {id}", "--attach", "media", "-o", str(out), "--batch"]
    args += ["--allow-private-urls"]  # the test server is on 127.0.0.1
    result = run_cli([*args, "--poll-interval", "0.1", "--keep-files"], fake.url, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert note("image/png", blob(5, 600)) in records["1"]["response"]
    assert note("image/png", blob(5, 600)) in records["4"]["response"]
    assert note("image/png", remote) in records["2"]["response"]
    assert records["3"]["error"]["status"] == "ATTACHMENT_DOWNLOAD_FAILED"
    assert all(r["mode"] == "batch" for r in records.values())
    # The job's input lines name files (two uploads: local.png once for two rows, and r.png), no bytes.
    state = json.loads((tmp_path / "out.jsonl.gembulk-batch.json").read_text())
    stored = {f["name"]: f for f in fake_files(fake)}
    inputs = [stored[job["input_file"]] for job in state["jobs"]]
    assert len(inputs) == 1
    with urllib.request.urlopen(
        f"{fake.url}/v1beta/{inputs[0]['name']}:download?alt=media&key={TEST_KEY}"
    ) as got:
        lines = [json.loads(line) for line in got.read().splitlines()]
    assert sorted(line["key"] for line in lines) == ["1", "2", "4"]
    parts = [part for line in lines for part in line["request"]["contents"][0]["parts"]]
    assert sum("fileData" in p for p in parts) == 3 and not any("inlineData" in p for p in parts)
    media_files = {p["fileData"]["fileUri"].rpartition("/files/")[2] for p in parts if "fileData" in p}
    assert len(media_files) == 2 and all(f"files/{f}" in stored for f in media_files)


def test_batch_deletes_its_uploaded_attachments_after_the_fetch(fake: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(blob(7, 300))
    path = write_csv(tmp_path / "rows.csv", [{"id": "1", "media": "a.png"}])
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "x", "--attach", "media", "-o", str(out), "--batch"]
    before = fake_files(fake)  # the fake's file store outlives a test; earlier tests may have kept files
    submitted = run_cli([*args, "--detach"], fake.url, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    state = json.loads((tmp_path / "out.jsonl.gembulk-batch.json").read_text())
    assert len(state["media_files"]) == 1 and state["attach"] == ["media"]
    fetched = run_cli(["batch", "wait", str(out), "--poll-interval", "0.1"], fake.url, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert note("image/png", blob(7, 300)) in read_jsonl(out)[0]["response"]
    assert fake_files(fake) == before


def test_cache_keys_on_the_attachment_content(fake: FakeAPI, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(blob(8, 400))
    path = write_csv(tmp_path / "rows.csv", [{"id": "1", "media": "a.png"}, {"id": "2", "media": "a.png"}])
    cache = tmp_path / "cache.sqlite"
    args = ["run", str(path), "-t", "describe", "--attach", "media", "--cache", str(cache)]
    first = run_cli(args, fake.url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli(args, fake.url, cwd=tmp_path)
    assert all(json.loads(line).get("cached") for line in second.stdout.splitlines())
    assert fake.stats()["generate_requests"] == 2  # the first run paid, the second did not
    image.write_bytes(blob(9, 400))  # new bytes under the same name: a new request
    os.utime(image, ns=(1, 1))
    third = run_cli(args, fake.url, cwd=tmp_path)
    records = [json.loads(line) for line in third.stdout.splitlines()]
    assert not any(r.get("cached") for r in records)
    assert all(note("image/png", blob(9, 400)) in r["response"] for r in records)
    assert fake.stats()["generate_requests"] == 4
