"""The address policy of URL attachments and the local-file confinement, unit by unit: which addresses are
public, how hosts are read, the resolver and socket checks over real connections, proxies from the
environment, capped downloads, and opening a file without following links."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gembulk import confined, filemodes, urlguard
from gembulk.downloads import Downloader
from gembulk.records import Attachment, AttachmentFailed
from tests.media_server import MediaSite, media_site


@pytest.fixture
def site() -> Iterator[MediaSite]:
    with media_site() as served:
        yield served


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT: not private by RFC 1918, not public either
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "fec0::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:0:a9fe:a9fe",  # IPv4-translated 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64: whatever the local network maps it to
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001::1",  # Teredo
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not urlguard.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses(address: str) -> None:
    assert urlguard.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("0", "0.0.0.0"),
        ("localhost", None),
        ("cafe.be", None),  # hex letters and dots, but a name
        ("example.com", None),
    ],
)
def test_literal_addresses_in_every_spelling(host: str, address: str | None) -> None:
    found = urlguard.literal_address(host)
    assert found == (ipaddress.ip_address(address) if address else None)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("gopher://example.com/x", "only http and https"),
        ("http:/no-host", "no host"),
        ("http://%6c%6f%63%61%6c%68%6f%73%74/", "not a plain name"),
        ("http://0x7f000001/", "127.0.0.1 is not a public address"),
        ("http://example.com@127.0.0.1/", "127.0.0.1 is not a public address"),  # userinfo is not the host
        ("HTTP://[::FFFF:7F00:1]/", "is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("http://example.com/a.png", None),  # a name: checked when it is resolved
        ("https://8.8.8.8/a.png", None),
    ],
)
def test_refusal_before_a_request(url: str, reason: str | None) -> None:
    found = urlguard.refusal(URL(url), allow_private=False)
    assert (found is None) if reason is None else (found is not None and reason in found)


def test_allow_private_lifts_only_the_address_rule() -> None:
    assert urlguard.refusal(URL("http://127.0.0.1/"), allow_private=True) is None
    assert urlguard.refusal(URL("file:///etc/passwd"), allow_private=True) is not None


class _Table(AbstractResolver):
    """A resolver with fixed answers, standing in for DNS (which names resolve where is the test's choice)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"{host} not found")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_public_addresses_and_refuses_names_with_none() -> None:
    table = _Table({"inside.test": ["10.0.0.7", "::1"], "both.test": ["127.0.0.1", "8.8.8.8"]})
    resolver = urlguard.PublicResolver(table)
    with pytest.raises(urlguard.BlockedAddress, match=r"inside\.test resolves to 10\.0\.0\.7"):
        await resolver.resolve("inside.test", 80)
    kept = await resolver.resolve("both.test", 80)
    assert [result["host"] for result in kept] == ["8.8.8.8"]  # the connector can only reach this one


async def test_the_system_resolver_is_checked_too() -> None:
    resolver = urlguard.PublicResolver()
    try:
        with pytest.raises(urlguard.BlockedAddress):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def _get(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        return response.status


async def test_a_name_resolving_to_loopback_is_never_connected(site: MediaSite) -> None:
    port = URL(site.url).port
    site.add("/secret", b"s")
    # The policy's connector, with a resolver that says the name is loopback: refused at resolution.
    table = _Table({"rebind.test": ["127.0.0.1"]})
    connector = aiohttp.TCPConnector(
        resolver=urlguard.PublicResolver(table), socket_factory=urlguard.public_socket
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientError) as raised:
            await _get(session, f"http://rebind.test:{port}/secret")
    assert urlguard.blocked_cause(raised.value) is not None
    assert site.hits == {}


async def test_the_socket_check_sees_the_address_really_connected(site: MediaSite) -> None:
    port = URL(site.url).port
    site.add("/secret", b"s")
    # A resolver that lets loopback through (as a buggy or rebinding one would): the socket factory,
    # which sees the address about to be connected, still refuses it.
    table = _Table({"sneaky.test": ["127.0.0.1"]})
    connector = aiohttp.TCPConnector(resolver=table, socket_factory=urlguard.public_socket)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in (f"http://sneaky.test:{port}/secret", f"{site.url}/secret"):
            with pytest.raises(aiohttp.ClientError) as raised:
                await _get(session, url)
            assert urlguard.blocked_cause(raised.value) is not None
    assert site.hits == {}
    sock = urlguard.public_socket((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("8.8.8.8", 80)))
    sock.close()  # a public address gets its socket


def test_the_environment_proxy_is_read_without_netrc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert urlguard.environment_proxy(URL("http://example.com/")) is None
    monkeypatch.setenv("HTTP_PROXY", "http://user:secret@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "skip.example")
    found = urlguard.environment_proxy(URL("http://example.com/a.png"))
    assert found is not None and found.url == URL("http://proxy.internal:3128")
    assert found.headers == {"Proxy-Authorization": "Basic dXNlcjpzZWNyZXQ="}  # user:secret
    assert urlguard.environment_proxy(URL("http://skip.example/a.png")) is None
    assert urlguard.environment_proxy(URL("https://example.com/a.png")) is None  # no HTTPS_PROXY


async def _download(site: MediaSite, path: str, **options: object) -> object:
    settings: dict[str, object] = {"max_bytes": 1 << 20, "spool_above": 1 << 20, "allow_private": True}
    settings.update(options)
    async with Downloader(**settings) as downloader:  # type: ignore[arg-type]
        try:
            return await downloader.get(Attachment("url", site.url + path, "c", "image/png"))
        except AttachmentFailed as failed:
            return failed.error


async def test_a_download_stops_at_the_cap_without_reading_the_rest(site: MediaSite) -> None:
    site.streams["/endless"] = (1 << 30, False)  # 1 GiB, no Content-Length: only counting can stop it
    site.streams["/announced"] = (1 << 30, True)  # refused on its Content-Length, before the body
    for path in ("/endless", "/announced"):
        error = await _download(site, path, max_bytes=100_000)
        assert getattr(error, "status", None) == "ATTACHMENT_TOO_LARGE", error
    assert site.sent["/endless"] < 32 << 20  # what the socket buffers took, not the gigabyte
    assert site.sent["/announced"] < 32 << 20


async def test_a_body_above_the_inline_limit_is_spooled_to_a_private_file(
    site: MediaSite, tmp_path: Path
) -> None:
    site.add("/big.png", b"x" * 300_000)
    got = await _download(site, "/big.png", spool_above=100_000, scratch_dir=str(tmp_path))
    path = getattr(got, "path", None)
    assert path is not None and os.path.getsize(path) == 300_000
    assert os.stat(path).st_mode & 0o777 == 0o600
    os.unlink(path)


async def test_redirects_are_followed_to_a_limit(site: MediaSite) -> None:
    site.add("/end.png", b"png")
    site.redirects["/a"] = "/b"
    site.redirects["/b"] = f"{site.url}/end.png"
    got = await _download(site, "/a")
    assert getattr(got, "data", None) == b"png"
    for hop in range(7):
        site.redirects[f"/loop{hop}"] = f"/loop{hop + 1}"
    error = await _download(site, "/loop0")
    assert getattr(error, "status", None) == "ATTACHMENT_DOWNLOAD_FAILED" and "redirects" in error.message  # type: ignore[attr-defined]
    site.redirects["/to-file"] = "file:///etc/passwd"
    error = await _download(site, "/to-file")  # even with private addresses allowed
    assert getattr(error, "status", None) == "ATTACHMENT_BLOCKED"


def test_a_file_is_opened_from_the_root_down_without_following_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"inside")
    (tmp_path / "secret.png").write_bytes(b"outside")
    real = confined.real_root(str(root))
    path = confined.resolve(real, "sub/a.png")
    assert confined.read(real, path) == b"inside"
    # The check passed, then a link is put in the way: the read refuses it instead of following it.
    (root / "sub" / "a.png").unlink()
    (root / "sub" / "a.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(confined.OutsideRoot):
        confined.read(real, path)
    (root / "sub" / "a.png").unlink()
    (root / "sub").rename(root / "moved")
    (root / "sub").symlink_to(tmp_path)  # a directory on the way swapped for a link
    (root / "moved" / "a.png").write_bytes(b"inside")
    with pytest.raises(confined.OutsideRoot):
        confined.read(real, path)
    with pytest.raises(confined.OutsideRoot):
        confined.read(real, str(tmp_path / "secret.png"))
    os.mkfifo(root / "pipe.png")  # a FIFO must not hang the read
    with pytest.raises(OSError, match="not a regular file"):
        confined.read(real, confined.resolve(real, "pipe.png"))


def test_paths_resolve_inside_the_root_only(tmp_path: Path) -> None:
    real = confined.real_root(str(tmp_path))
    assert confined.resolve(real, "~/x.png") == os.path.join(real, "~", "x.png")  # ~ is a name
    assert not confined.inside(real, confined.resolve(real, "../x.png"))
    assert not confined.inside(real, confined.resolve(real, "/etc/passwd"))
    assert confined.inside(real, confined.resolve(real, "a/../b.png"))
    nul = confined.resolve(real, "a\0b")  # a name no file can have: inside, and refused as missing
    assert confined.inside(real, nul) and not os.path.isfile(nul)


def test_a_private_file_keeps_its_mode_when_opened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    filemodes.create_private(str(path))  # what the batch download does before the SDK writes the file
    with open(path, "wb") as handle:
        handle.write(b"answers")
    assert path.stat().st_mode & 0o777 == 0o600
    with filemodes.open_private(str(tmp_path / "part.jsonl")) as handle:
        handle.write(b"prompts")
    assert (tmp_path / "part.jsonl").stat().st_mode & 0o777 == 0o600
