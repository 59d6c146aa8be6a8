"""Which webhook URLs the gateway may POST to: never anything but http(s), and (unless
`kym serve --webhook-allow-private`) only hosts whose every address is public, so that a webhook
cannot make the gateway reach its own network. Checked when a webhook is added and again at
every delivery, which then connects to the very address it checked (no second lookup that DNS
could answer differently).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httpx

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


# One answer for a name that does not resolve and one that resolves to a private address, and
# never the address: they told any owner which internal names exist and where they point.
NOT_PUBLIC = "the host {host} is not a public address (it does not resolve to public ones only)"


class UrlNotAllowed(Exception):
    """A webhook URL the gateway refuses (`webhook_url_not_allowed`)."""


def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for the host."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 forms that carry an IPv4 address in their last 32 bits, which a NAT64 gateway or a
# translator on the path turns into that address: judged as that address.
_CARRYING_IPV4 = [
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64's well-known prefix (RFC 6052)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
]
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")  # every other IPv6 address is not public


def is_public(address: IpAddress) -> bool:
    """A globally routable unicast address (not loopback, private, link-local, shared,
    reserved, multicast or unspecified; IPv4 inside IPv6 is judged as IPv4). For IPv6 only
    global unicast (2000::/3) is public: Python's `is_global` also takes site-local (fec0::/10),
    NAT64's local-use prefix (64:ff9b:1::/48) and the NAT64 form of a private IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or address.teredo
        if isinstance(embedded, tuple):
            embedded = embedded[1]
        if embedded is None and any(address in net for net in _CARRYING_IPV4):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:
            return is_public(embedded)
        if address not in _GLOBAL_UNICAST:
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: the checked address (None: resolve as usual), and the URL."""

    url: SplitResult
    address: str | None

    @property
    def host(self) -> str:
        return self.url.hostname or ""

    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        if self.address is None:
            return self.url.geturl()
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal if self.url.port is None else f"{literal}:{self.url.port}"
        return self.url._replace(netloc=netloc).geturl()


def check_scheme(url: str) -> SplitResult:
    """An absolute http(s) URL with a host, else `UrlNotAllowed`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UrlNotAllowed(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("a webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UrlNotAllowed("a webhook URL must not carry a user name or password")
    return _ascii_host(url, parts)


def _ascii_host(url: str, parts: SplitResult) -> SplitResult:
    """The URL with its host as DNS and HTTP carry it: an internationalised name in its IDNA
    form (as httpx encodes it), which is what is resolved, checked and sent as Host and SNI;
    sent as typed, it raised UnicodeEncodeError in httpx at every attempt, never logged."""
    try:
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeDecodeError) as exc:
        raise UrlNotAllowed(f"not a valid host name: {exc}") from exc
    literal = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=literal if parts.port is None else f"{literal}:{parts.port}")


def check_url(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver = resolve,
    public: Callable[[IpAddress], bool] = is_public,
) -> Target:
    """The target to connect to for this URL, or `UrlNotAllowed` saying why not."""
    parts = check_scheme(url)
    if allow_private:
        return Target(parts, None)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host, port)]
    except (OSError, ValueError):
        addresses = []
    if not addresses or not all(public(a) for a in addresses):
        raise UrlNotAllowed(NOT_PUBLIC.format(host=parts.hostname))
    return Target(parts, str(addresses[0]))
