"""URL attachments fetched by the Downloader against a real local HTTP server: what is refused before any
connection (schemes, malformed URLs, non-public literals in every spelling), how each HTTP answer becomes a
retryable failure or a failed row, the media type an answer may give, and no spooled file left behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gembulk.downloads import Downloaded, Downloader
from gembulk.records import Attachment, AttachmentFailed, CallFailed, RowError
from tests.media_server import MediaSite, media_site


@pytest.fixture(scope="module")
def served() -> Iterator[MediaSite]:
    with media_site() as running:  # one server for the module: stopping one takes half a second
        yield running


@pytest.fixture
def site(served: MediaSite) -> MediaSite:
    for table in (served.files, served.flaky, served.redirects, served.streams, served.sent, served.hits):
        table.clear()
    return served


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


async def fetch(
    url: str, mime: str | None = "image/png", **options: object
) -> Downloaded | RowError | CallFailed:
    """One attempt: what it got, the failed row's error, or the retryable failure."""
    settings: dict[str, object] = {"max_bytes": 1 << 20, "spool_above": 1 << 20, "allow_private": True}
    settings.update(options)
    async with Downloader(**settings) as downloader:  # type: ignore[arg-type]
        try:
            return await downloader.get(Attachment("url", url, "photo", mime))
        except AttachmentFailed as failed:
            return failed.error
        except CallFailed as failed:
            return failed


def port_of(site: MediaSite) -> int:
    return int(site.url.rsplit(":", 1)[1])


# -- refused before any connection --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.png", "a ftp URL: only http and https are fetched"),
        ("file:///etc/passwd", "a file URL: only http and https are fetched"),
        ("//example.com/a.png", "a relative URL"),
        ("http:///a.png", "the URL names no host"),
        ("http://[::1/a.png", "not a valid URL"),
        ("http://exa%6dple.com/a.png", "is not a plain name"),
    ],
)
async def test_urls_that_cannot_be_fetched_are_refused_as_blocked(
    no_proxy: None, url: str, reason: str
) -> None:
    error = await fetch(url, allow_private=True)
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_BLOCKED"
    assert error.message.startswith(f"photo {url}: ") and reason in error.message


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::1]",
    ],
)
async def test_loopback_in_any_spelling_is_never_connected(
    site: MediaSite, no_proxy: None, host: str
) -> None:
    site.add("/secret.png", b"secret")
    error = await fetch(f"http://{host}:{port_of(site)}/secret.png", allow_private=False)
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_BLOCKED"
    assert "is not a public address (--allow-private-urls allows it)" in error.message
    assert site.hits == {}


async def test_a_name_for_loopback_is_refused_where_the_socket_would_connect(
    site: MediaSite, no_proxy: None
) -> None:
    site.add("/secret.png", b"secret")
    error = await fetch(f"http://localhost:{port_of(site)}/secret.png", allow_private=False)
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_BLOCKED"
    assert "not a public address" in error.message and site.hits == {}


# -- answers -----------------------------------------------------------------------------------------


async def test_an_http_error_is_a_retryable_failure_with_its_code(site: MediaSite, no_proxy: None) -> None:
    site.flaky["/busy.png"] = 1
    site.add("/busy.png", b"ok")
    missing = await fetch(f"{site.url}/missing.png")
    assert isinstance(missing, CallFailed)
    assert (missing.status, missing.code, missing.transport) == ("HTTP_404", 404, False)
    assert missing.message == "GET answered 404 Not Found"
    busy = await fetch(f"{site.url}/busy.png")
    assert isinstance(busy, CallFailed) and busy.code == 503
    again = await fetch(f"{site.url}/busy.png")  # the next attempt gets the file
    assert isinstance(again, Downloaded) and again.data == b"ok"


async def test_a_refused_connection_is_a_transport_failure(no_proxy: None) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: the connection is refused
        failure = await fetch(f"http://127.0.0.1:{port}/a.png")
    assert isinstance(failure, CallFailed)
    assert (failure.status, failure.transport) == ("UNAVAILABLE", True)
    assert failure.message.startswith("download failed: ")


@pytest.mark.parametrize(
    ("content_type", "guessed", "expected"),
    [
        ("image/jpeg", "image/png", "image/jpeg"),  # the answer knows better than the extension
        ("Image/WEBP; charset=binary", None, "image/webp"),
        ("application/octet-stream", "image/png", "image/png"),  # generic: the extension decides
        ("binary/octet-stream", "audio/mpeg", "audio/mpeg"),
        ("", "application/pdf", "application/pdf"),
    ],
)
async def test_the_media_type_comes_from_the_answer_unless_it_is_generic(
    site: MediaSite, no_proxy: None, content_type: str, guessed: str | None, expected: str
) -> None:
    url = site.add("/thing", b"bytes", content_type)
    got = await fetch(url, guessed)
    assert isinstance(got, Downloaded) and (got.mime_type, got.size, got.data) == (expected, 5, b"bytes")


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/unknown", ""])
async def test_no_type_from_the_answer_or_the_name_fails_the_row(
    site: MediaSite, no_proxy: None, content_type: str
) -> None:
    url = site.add("/download", b"??", content_type)
    error = await fetch(url, None)
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_UNKNOWN_TYPE"
    assert error.message == f"photo {url}: the answer names no media type"


async def test_a_redirect_to_a_malformed_url_is_blocked(site: MediaSite, no_proxy: None) -> None:
    site.redirects["/bad"] = "http://[broken/x.png"
    error = await fetch(f"{site.url}/bad")
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_BLOCKED"
    assert "redirected to an invalid URL 'http://[broken/x.png'" in error.message


async def test_a_relative_redirect_resolves_against_the_hop(site: MediaSite, no_proxy: None) -> None:
    site.add("/media/b.png", b"second")
    site.redirects["/media/a"] = "b.png"
    got = await fetch(f"{site.url}/media/a")
    assert isinstance(got, Downloaded) and got.data == b"second"
    assert site.hits == {"/media/a": 1, "/media/b.png": 1}


async def test_a_body_over_the_cap_after_spooling_leaves_no_file(
    site: MediaSite, no_proxy: None, tmp_path: Path
) -> None:
    site.streams["/long.mp4"] = (4 << 20, False)  # no Content-Length: counted as it comes
    error = await fetch(
        f"{site.url}/long.mp4", max_bytes=1 << 20, spool_above=100_000, scratch_dir=str(tmp_path)
    )
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_TOO_LARGE"
    assert "larger than 1,048,576 bytes (--max-download)" in error.message
    assert list(tmp_path.iterdir()) == []  # the spooled part was removed


async def test_a_body_exactly_at_the_cap_is_kept(site: MediaSite, no_proxy: None) -> None:
    url = site.add("/exact.png", b"x" * 1000)
    got = await fetch(url, max_bytes=1000, spool_above=1000)
    assert isinstance(got, Downloaded) and got.size == 1000 and got.data is not None and got.path is None
    assert isinstance(await fetch(url, max_bytes=999), RowError)


# -- through an HTTP proxy: the host is checked here, the proxy connects ------------------------------


@pytest.fixture
def via_proxy(site: MediaSite, monkeypatch: pytest.MonkeyPatch) -> MediaSite:
    for name in ("http_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", site.url)  # the media server answers as a proxy too
    return site


async def test_a_public_literal_goes_through_the_proxy(via_proxy: MediaSite) -> None:
    via_proxy.files["http://1.1.1.1/pic.png"] = ("image/png", b"proxied")
    got = await fetch("http://1.1.1.1/pic.png", allow_private=False)
    assert isinstance(got, Downloaded) and got.data == b"proxied"
    assert via_proxy.hits == {"http://1.1.1.1/pic.png": 1}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost/pic.png", "resolves to"),  # resolved here first: loopback only
        ("http://10.0.0.7/pic.png", "10.0.0.7 is not a public address"),
        ("http://nothing.invalid/pic.png", "does not resolve here, so its address cannot be checked"),
    ],
)
async def test_what_the_proxy_would_fetch_is_checked_first(
    via_proxy: MediaSite, url: str, reason: str
) -> None:
    error = await fetch(url, allow_private=False)
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_BLOCKED", error
    assert reason in error.message
    assert via_proxy.hits == {}


async def test_a_proxied_redirect_to_the_private_network_is_refused_at_that_hop(via_proxy: MediaSite) -> None:
    via_proxy.redirects["http://1.1.1.1/go"] = "http://192.168.1.10/router.png"
    error = await fetch("http://1.1.1.1/go", allow_private=False)
    assert isinstance(error, RowError) and error.status == "ATTACHMENT_BLOCKED"
    assert error.message.startswith("photo http://1.1.1.1/go: redirected to http://192.168.1.10/router.png: ")
    assert via_proxy.hits == {"http://1.1.1.1/go": 1}
