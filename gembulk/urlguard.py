"""Which addresses a URL attachment may reach: public ones only, checked where the socket connects.

A URL in a row comes from whoever wrote the file, so it must not make gembulk fetch what only this
machine can reach (its loopback services, the cloud metadata address, the private network) and send
it to the model. Three checks, each on what is really used rather than on how the URL spells it:

- `refusal`, before a request: the scheme, and a host that is an IP literal in any spelling the system
  resolver accepts (`127.1`, `0x7f000001`, `2130706433`, `[::ffff:127.0.0.1]`);
- `PublicResolver`, the session's resolver: a name's addresses are filtered, so a name that resolves to
  127.0.0.1 is refused, and the connector can only connect to an address that passed (no second lookup
  for a rebinding name to answer differently);
- `public_socket`, the connector's socket factory: the address of every connection actually made,
  the last word whatever the parsers above saw.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

URL_SCHEMES = frozenset({"http", "https"})
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not reachable on the public internet, so a URL naming one aims at this machine or its network.
# Listed here rather than left to `is_global` alone: what `ipaddress` calls global has changed between
# Python patch releases (IPv4-mapped addresses, 2002::/16), and `is_global` says yes to multicast.
_IPV4_NON_PUBLIC = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 (reaches the local host on Linux) included
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT shared space
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255 included
    )
)
_IPV6_NON_PUBLIC = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/128",
        "::1/128",
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) included
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "64:ff9b:1::/48",  # local-use NAT64: translates to whatever the local network holds
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed by some stacks)
        "ff00::/8",  # multicast
    )
)
# IPv6 forms that carry an IPv4 address in their low 32 bits: the connection reaches that IPv4 address.
_IPV4_IN_LOW_BITS = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "::/96",  # IPv4-compatible (deprecated): also holds :: and ::1
    )
)
# A host made only of these may be an old-style IPv4 literal (0x7f.1, 0177.0.0.1, 2130706433).
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


class BlockedAddress(OSError):
    """A connection to an address that is not public was refused before it was made."""


def is_public(address: IPAddress) -> bool:
    """Whether the address is reachable on the public internet (and so not this machine or its network)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if any(address in network for network in _IPV6_NON_PUBLIC):
            return False
    elif any(address in network for network in _IPV4_NON_PUBLIC):
        return False
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    for network in _IPV4_IN_LOW_BITS:
        if address in network:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour  # 2002::/16 carries it in bits 16-48


def literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host names, in any spelling the system resolver accepts; None for a name."""
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(text):
        try:  # inet_aton reads the old forms (hex, octal, fewer than four parts) as getaddrinfo does
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def refusal(url: URL, *, allow_private: bool) -> str | None:
    """Why this URL may not be requested (its scheme, its host, an IP literal that is not public), else None.

    A host that is a name is checked when it is resolved (`PublicResolver`), not here.
    """
    if url.scheme not in URL_SCHEMES:
        return f"a {url.scheme or 'relative'} URL: only http and https are fetched"
    host = url.raw_host
    if not host:
        return "the URL names no host"
    if "%" in host and ":" not in host:  # percent-encoding in a name: what would resolve it is unclear
        return f"the host {host!r} is not a plain name"
    if allow_private:
        return None
    address = literal_address(host)
    if address is not None and not is_public(address):
        return f"{address} is not a public address (--allow-private-urls allows it)"
    return None


def address_of(result: ResolveResult) -> IPAddress | None:
    try:
        return ipaddress.ip_address(result["host"])
    except ValueError:
        return None


class PublicResolver(AbstractResolver):
    """The system resolver (aiohttp's default), keeping only public addresses: a name that resolves to
    nothing else is refused with BlockedAddress, one that resolves to both connects only to the public."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [
            result for result in found if (address := address_of(result)) is not None and is_public(address)
        ]
        if not public:
            listed = ", ".join(str(result["host"]) for result in found[:3])
            raise BlockedAddress(f"{host} resolves to {listed}: not a public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def public_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """The connector's socket factory: a socket only for a public address (the one about to be connected)."""
    family, type_, proto, _, sockaddr = addr_info
    try:
        address: IPAddress | None = ipaddress.ip_address(sockaddr[0])
    except ValueError:
        address = None
    if address is None or not is_public(address):
        raise BlockedAddress(f"{sockaddr[0]} is not a public address")
    return socket.socket(family=family, type=type_, proto=proto)


def guarded_connector(*, allow_private: bool) -> aiohttp.TCPConnector:
    """A connector for URL attachments: public addresses only, unless --allow-private-urls."""
    if allow_private:
        return aiohttp.TCPConnector()
    return aiohttp.TCPConnector(resolver=PublicResolver(), socket_factory=public_socket)


def blocked_cause(exc: BaseException) -> BlockedAddress | None:
    """The BlockedAddress behind an aiohttp connection error, if that is why it failed."""
    seen: BaseException | None = exc
    for _ in range(10):  # aiohttp wraps it once or twice; a bound, not a walk of any length
        if seen is None:
            return None
        if isinstance(seen, BlockedAddress):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy the environment names for a URL (HTTP_PROXY, HTTPS_PROXY; NO_PROXY respected)."""

    url: URL
    headers: dict[str, str]


def environment_proxy(url: URL) -> Proxy | None:
    """The proxy the environment routes this URL through, or None to connect directly.

    Read here rather than through aiohttp's `trust_env`, which would also send the user's ~/.netrc
    password for any host a row names.
    """
    host = url.raw_host or ""
    configured = urllib.request.getproxies().get(url.scheme)
    if not configured or urllib.request.proxy_bypass(host):
        return None
    proxy = URL(configured if "://" in configured else f"http://{configured}")
    if proxy.scheme != "http":  # aiohttp speaks to HTTP proxies only
        return None
    headers = {}
    if proxy.user is not None:
        credentials = f"{proxy.user}:{proxy.password or ''}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    return Proxy(proxy.with_user(None), headers)
