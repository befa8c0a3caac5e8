"""Input files from elsewhere, end to end through the CLI: a row cannot make gembulk read outside the
attachment folder or reach an internal address; downloads are bounded; files holding answers are private;
the API key is not left on the command line."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import (
    TEST_KEY,
    FakeAPI,
    by_id,
    cli_env,
    gembulk_command,
    read_jsonl,
    run_cli,
    write_csv,
)
from tests.fswatch import watch_opens
from tests.media_server import MediaSite, media_site
from tests.test_cli_attach import blob, note


@pytest.fixture
def site() -> Iterator[MediaSite]:
    with media_site() as served:
        yield served


@pytest.fixture
def port(site: MediaSite) -> str:
    """The media site's port, with /secret.png served there: what no row may fetch by any name of this
    host."""
    site.add("/secret.png", blob(5, 100))
    return site.url.rsplit(":", 1)[1]


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Path]:
    """A job folder (the attachment root) and, beside it, files a row must never reach."""
    job = tmp_path / "job"
    job.mkdir()
    (job / "inside.png").write_bytes(blob(1, 300))
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(blob(2, 300))
    (job / "link.png").symlink_to(secret)
    (job / "linked-dir").symlink_to(secret.parent)
    credentials = tmp_path / "home" / ".config" / "gcloud" / "application_default_credentials.json"
    credentials.parent.mkdir(parents=True)
    credentials.write_text('{"refresh_token": "do-not-send"}')
    return {"job": job, "secret": secret, "credentials": credentials, "home": tmp_path / "home"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../outside/secret.png", "outside the attachment folder"),
        ("{secret}", "outside the attachment folder"),  # an absolute path
        ("link.png", "outside the attachment folder"),  # a symbolic link out
        ("linked-dir/secret.png", "outside the attachment folder"),  # a linked directory out
        ("inside.png/../../outside/secret.png", "outside the attachment folder"),
        ("~/.config/gcloud/application_default_credentials.json", "not found"),  # ~ is a plain name
        ("file://{secret}", "a file: URL"),
        ("FILE:{secret}", "a file: URL"),
        ("ftp://127.0.0.1/secret.png", "a ftp: URL"),
    ],
)
def test_local_escapes_are_refused_before_anything_is_read_or_sent(
    fake: FakeAPI, outside: dict[str, Path], value: str, message: str
) -> None:
    job = outside["job"]
    value = value.format(secret=outside["secret"])
    path = write_csv(job / "rows.csv", [{"id": "1", "p": "inside.png"}, {"id": "2", "p": value}])
    out = job / "out.jsonl"
    with watch_opens(outside["secret"], outside["credentials"]) as watch:
        result = run_cli(
            ["run", str(path), "-t", "d", "--attach", "p", "-o", str(out)],
            fake.url,
            cwd=job,
            HOME=str(outside["home"]),
        )
        assert watch.opened() == set()  # provably never read, not even opened
    assert result.returncode == 2, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("gembulk: error: ") and "line 3 (id 2)" in first and message in first
    assert "Traceback" not in result.stderr and "do-not-send" not in result.stderr
    assert not out.exists()
    assert fake.stats()["generate_requests"] == 0 and fake.stats()["files_uploaded"] == 0


def test_stdin_rows_are_confined_to_the_current_directory(fake: FakeAPI, outside: dict[str, Path]) -> None:
    job = outside["job"]
    args = ["run", "-", "--input-format", "csv", "-t", "d", "--attach", "p"]
    ok = run_cli(args, fake.url, cwd=job, stdin="id,p\n1,inside.png\n")
    assert ok.returncode == 0, ok.stderr
    assert note("image/png", blob(1, 300)) in json.loads(ok.stdout)["response"]
    with watch_opens(outside["secret"]) as watch:
        refused = run_cli(args, fake.url, cwd=job, stdin="id,p\n1,../outside/secret.png\n")
        assert watch.opened() == set()
    assert refused.returncode == 2 and "outside the attachment folder" in refused.stderr


def test_attach_root_lifts_only_the_folder_rule(
    fake: FakeAPI, site: MediaSite, outside: dict[str, Path]
) -> None:
    job, secret = outside["job"], outside["secret"]
    site.add("/secret.png", blob(3, 100))
    rows = [
        {"id": "absolute", "p": str(secret)},
        {"id": "link", "p": "job/link.png"},  # its target is inside this root
        {"id": "relative", "p": "outside/secret.png"},  # relative paths start from the root
        {"id": "url", "p": f"{site.url}/secret.png"},  # still blocked: another rule
    ]
    path = write_csv(job / "rows.csv", rows)
    args = ["run", str(path), "-t", "d", "--attach", "p", "--attach-root", str(job.parent)]
    with watch_opens(secret) as watch:
        result = run_cli(args, fake.url, cwd=job)
        assert watch.opened() == {secret}  # the watch sees gembulk's reads: its silence elsewhere is proof
    assert result.returncode == 1, result.stderr
    records = by_id([json.loads(line) for line in result.stdout.splitlines()])
    for row_id in ("absolute", "link", "relative"):
        assert note("image/png", secret.read_bytes()) in records[row_id]["response"]
    assert records["url"]["error"]["status"] == "ATTACHMENT_BLOCKED"
    assert site.hits == {}
    # --attach-root must name a folder that exists.
    refused = run_cli([*args[:-1], str(job / "missing")], fake.url, cwd=job)
    assert refused.returncode == 2 and "--attach-root" in refused.stderr


def test_allow_private_urls_lifts_only_the_address_rule(
    fake: FakeAPI, site: MediaSite, outside: dict[str, Path]
) -> None:
    job = outside["job"]
    site.add("/img.png", blob(4, 200))
    site.redirects["/start"] = f"http://localhost:{site.url.rsplit(':', 1)[1]}/img.png"
    rows = [{"id": "1", "p": f"{site.url}/start"}]
    path = write_csv(job / "rows.csv", rows)
    args = ["run", str(path), "-t", "d", "--attach", "p", "--allow-private-urls"]
    result = run_cli(args, fake.url, cwd=job)
    assert result.returncode == 0, result.stderr
    assert note("image/png", blob(4, 200)) in json.loads(result.stdout)["response"]  # the redirect followed
    write_csv(job / "rows.csv", [*rows, {"id": "2", "p": "../outside/secret.png"}])
    with watch_opens(outside["secret"]) as watch:
        still = run_cli(args, fake.url, cwd=job)
        assert watch.opened() == set()
    assert still.returncode == 2 and "outside the attachment folder" in still.stderr


def test_internal_addresses_are_never_requested(
    fake: FakeAPI, site: MediaSite, outside: dict[str, Path], port: str
) -> None:
    job = outside["job"]
    # What an upper-case scheme would have named as a local path: it must not be read either.
    as_path = job / "HTTP:" / f"127.0.0.1:{port}" / "secret.png"
    as_path.parent.mkdir(parents=True)
    as_path.write_bytes(blob(6, 100))
    urls = [
        f"http://localhost:{port}/secret.png",  # a name that resolves to 127.0.0.1
        f"HTTP://LOCALHOST:{port}/secret.png",
        f"http://127.0.0.1:{port}/secret.png",
        f"HTTP://127.0.0.1:{port}/secret.png",
        f"http://127.1:{port}/secret.png",
        f"http://0x7f000001:{port}/secret.png",
        f"http://2130706433:{port}/secret.png",
        f"http://0177.0.0.1:{port}/secret.png",
        f"http://0.0.0.0:{port}/secret.png",  # reaches the local host on Linux
        f"http://[::ffff:127.0.0.1]:{port}/secret.png",
        f"http://example.com@127.0.0.1:{port}/secret.png",  # userinfo, then the real host
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://100.64.0.1/a.png",
        "http://[fe80::1]/a.png",
        "http://[fd00::1]/a.png",
    ]
    with media_site("::1") as site6:
        site6.add("/secret.png", blob(7, 100))
        urls.append(f"{site6.url}/secret.png")
        rows = [{"id": str(number), "u": url} for number, url in enumerate(urls, 1)]
        path = write_csv(job / "rows.csv", rows)
        out = job / "out.jsonl"
        with watch_opens(as_path) as watch:
            result = run_cli(
                ["run", str(path), "-t", "d", "--attach", "u", "-o", str(out)], fake.url, cwd=job
            )
            assert watch.opened() == set()
        assert site6.hits == {}
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert len(records) == len(urls)
    for row_id, record in records.items():
        assert record["error"]["status"] == "ATTACHMENT_BLOCKED", (urls[int(row_id) - 1], record["error"])
        assert "--allow-private-urls" in record["error"]["message"]
    assert site.hits == {}  # the server's counters: not one request arrived
    assert fake.stats()["generate_requests"] == 0  # a blocked row is never sent


def test_redirects_are_checked_hop_by_hop_through_a_proxy(
    fake: FakeAPI, site: MediaSite, outside: dict[str, Path], port: str
) -> None:
    # The local server plays an HTTP proxy for a public address (1.1.1.1 is never connected: the proxy
    # answers for it), so a first hop is allowed and the redirect it answers is what gets checked.
    job = outside["job"]
    site.files["http://1.1.1.1/ok.png"] = ("image/png", blob(9, 100))
    site.redirects["http://1.1.1.1/hop"] = "/ok.png"
    site.redirects["http://1.1.1.1/to-loopback"] = f"http://127.0.0.1:{port}/secret.png"
    site.redirects["http://1.1.1.1/to-localhost"] = f"http://localhost:{port}/secret.png"
    site.redirects["http://1.1.1.1/to-file"] = "file:///etc/passwd"
    names = ["hop", "to-loopback", "to-localhost", "to-file"]
    rows = [{"id": name, "u": f"http://1.1.1.1/{name}"} for name in names]
    rows.append({"id": "named", "u": f"http://localhost:{port}/secret.png"})  # proxied: resolved here first
    path = write_csv(job / "rows.csv", rows)
    out = job / "out.jsonl"
    result = run_cli(
        ["run", str(path), "-t", "d", "--attach", "u", "-o", str(out)],
        fake.url,
        cwd=job,
        HTTP_PROXY=site.url,
        NO_PROXY="127.0.0.1",  # the fake API is reached directly; localhost goes through the proxy
    )
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert note("image/png", blob(9, 100)) in records["hop"]["response"]
    for row_id in ("to-loopback", "to-localhost", "to-file", "named"):
        assert records[row_id]["error"]["status"] == "ATTACHMENT_BLOCKED", records[row_id]["error"]
    assert "redirected to" in records["to-loopback"]["error"]["message"]
    assert site.hits == {f"http://1.1.1.1/{name}": 1 for name in names} | {"http://1.1.1.1/ok.png": 1}


def test_downloads_are_capped_in_size_and_time(
    fake: FakeAPI, site: MediaSite, outside: dict[str, Path]
) -> None:
    job = outside["job"]
    site.add("/fits.png", blob(10, 40_000))
    site.add("/over-inline.png", blob(11, 60_000))
    site.streams["/endless.mp4"] = (1 << 30, False)
    rows = [
        {"id": name, "u": f"{site.url}/{name}"} for name in ("fits.png", "over-inline.png", "endless.mp4")
    ]
    path = write_csv(job / "rows.csv", rows)
    args = ["run", str(path), "-t", "d", "--attach", "u", "--allow-private-urls"]
    # The cap defaults to the inline limit.
    result = run_cli([*args, "--inline-limit", "50KB"], fake.url, cwd=job)
    assert result.returncode == 1, result.stderr
    records = by_id([json.loads(line) for line in result.stdout.splitlines()])
    assert records["fits.png"]["error"] is None
    for row_id in ("over-inline.png", "endless.mp4"):
        assert records[row_id]["error"]["status"] == "ATTACHMENT_TOO_LARGE"
    assert site.sent["/endless.mp4"] < 32 << 20  # cut off: what the socket buffers held, not the gigabyte
    raised = run_cli([*args, "--inline-limit", "50KB", "--max-download", "100KB"], fake.url, cwd=job)
    records = by_id([json.loads(line) for line in raised.stdout.splitlines()])
    assert records["over-inline.png"]["error"] is None  # uploaded through the Files API instead
    assert records["endless.mp4"]["error"]["status"] == "ATTACHMENT_TOO_LARGE"

    with media_site() as slow:
        slow.delay = 5.0
        slow.add("/late.png", blob(12, 100))
        write_csv(job / "rows.csv", [{"id": "late", "u": f"{slow.url}/late.png"}])
        late = run_cli([*args, "--timeout", "1"], fake.url, cwd=job)
    error = json.loads(late.stdout)["error"]
    assert error["status"] == "ATTACHMENT_DOWNLOAD_FAILED" and "within 1 s" in error["message"]


def _run_with_umask(
    args: list[str], url: str, umask: int, cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gembulk_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(url),
        cwd=cwd,
        preexec_fn=lambda: os.umask(umask),  # the child's umask only
    )


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_holding_answers_are_private_and_the_output_follows_the_umask(
    fake: FakeAPI, tmp_path: Path, umask: int
) -> None:
    rows = [{"id": str(i), "text": f"q{i}"} for i in range(3)]
    path = write_csv(tmp_path / "rows.csv", rows)
    out = tmp_path / "out.jsonl"
    cache = tmp_path / "cache.sqlite"
    online = _run_with_umask(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--cache", str(cache)], fake.url, umask, tmp_path
    )
    assert online.returncode == 0, online.stderr
    assert _mode(out) == 0o666 & ~umask  # as `> out` would be
    assert _mode(cache) == 0o600
    assert not (tmp_path / "out.jsonl.gembulk.lock").exists()  # removed by the run that held it
    for sqlite_file in tmp_path.glob("cache.sqlite-*"):  # -wal, -shm: SQLite gives them the file's mode
        assert _mode(sqlite_file) == 0o600, sqlite_file

    batch_out = tmp_path / "batch.jsonl"
    submitted = _run_with_umask(
        ["run", "-", "--input-format", "csv", "-t", "{text}", "-o", str(batch_out), "--batch", "--detach"],
        fake.url,
        umask,
        tmp_path,
        stdin=path.read_text(),
    )
    assert submitted.returncode == 0, submitted.stderr
    for suffix in (".gembulk-batch.json", ".gembulk-batch.input"):
        assert _mode(tmp_path / f"batch.jsonl{suffix}") == 0o600, suffix
    job = submitted.stdout.split()[0]
    wait = ["batch", "wait", str(batch_out), "--poll-interval", "0.1", "--keep-files"]
    fetched = _run_with_umask(wait, fake.url, umask, tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert _mode(batch_out) == 0o666 & ~umask
    bare = tmp_path / "bare.jsonl"  # a job fetched by name: written to a temporary file, then renamed
    fetched_bare = _run_with_umask(
        ["batch", "fetch", job, "-o", str(bare), "--keep-files"], fake.url, umask, tmp_path
    )
    assert fetched_bare.returncode == 0, fetched_bare.stderr
    assert _mode(bare) == 0o666 & ~umask


def test_an_api_key_on_the_command_line_is_warned_about_and_a_key_file_is_not(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "rows.csv", [{"id": "1", "text": "hi"}])
    base = ["run", str(path), "-t", "{text}"]
    typed = run_cli([*base, "--api-key", "typed-key"], fake.url, GEMINI_API_KEY=None)
    assert typed.returncode == 0, typed.stderr
    warnings = [line for line in typed.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "GEMINI_API_KEY" in warnings[0] and "typed-key" not in typed.stderr
    key_file = tmp_path / "key.txt"
    key_file.write_text("  file-key\n")
    for flags in (["--api-key-file", str(key_file)], ["--api-key", f"@{key_file}"]):
        quiet = run_cli([*base, *flags], fake.url, GEMINI_API_KEY=None)
        assert quiet.returncode == 0, quiet.stderr
        assert "warning" not in quiet.stderr and "file-key" not in quiet.stderr
    assert {"typed-key", "file-key"} <= set(fake.stats()["keys_seen"])
    listed = run_cli(["batch", "list", "--api-key-file", str(key_file)], fake.url, GEMINI_API_KEY=None)
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--api-key-file", "{dir}/missing.txt"], "cannot read it"),
        (["--api-key", "@{dir}"], "cannot read it"),  # a directory
        (["--api-key-file", "{dir}/two-words.txt"], "does not hold one API key"),
        (["--api-key-file", "{dir}/two-words.txt", "--api-key", "x"], "not both"),
    ],
)
def test_a_bad_key_file_is_one_line_and_never_shows_its_content(
    fake: FakeAPI, tmp_path: Path, flags: list[str], message: str
) -> None:
    path = write_csv(tmp_path / "rows.csv", [{"id": "1", "text": "hi"}])
    (tmp_path / "two-words.txt").write_text(f"{TEST_KEY} and-more\n")
    args = ["run", str(path), "-t", "{text}", *(flag.format(dir=tmp_path) for flag in flags)]
    result = run_cli(args, fake.url, GEMINI_API_KEY=None)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0] and TEST_KEY not in result.stderr
    assert fake.stats()["generate_requests"] == 0
