"""Which scheme and host the client used: the request's own, or a trusted proxy's X-Forwarded-*.

One answer per request, used for everything that depends on it: the service a request is routed
to, the URL its `X-Twilio-Signature` is checked against, `context.DOMAIN_NAME`, and the host a
`Set-Cookie` `Domain` may name. Forwarded headers are believed only from `trusted_proxies` (and
only with `behind_proxy`), read at the hop of the outermost trusted proxy: `X-Forwarded-For` is
walked from the right while its addresses are trusted proxies; the first one that is not is the
client, and `X-Forwarded-Proto`/`-Host` are taken at that same depth from the right, so a value
the client put in front of the chain is never used.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from aiohttp import web

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
_SCHEMES = ("http", "https")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Origin:
    """Scheme and host[:port] the client addressed, and the client's address."""

    scheme: str
    host: str
    client: str

    @property
    def hostname(self) -> str:
        """The host without its port, lowercased, without a trailing dot."""
        host = self.host
        if host.startswith("["):
            host = host[: host.find("]") + 1]
        else:
            host = host.rsplit(":", 1)[0]
        return host.lower().rstrip(".")


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address as a peer or in X-Forwarded-For (IPv4-mapped IPv6 as IPv4); None if not one."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1: text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.9:5000"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyTrust:
    """Decides, once per request, whose forwarded headers count (settings read at start-up)."""

    def __init__(self, behind_proxy: bool, trusted_proxies: list[str]) -> None:
        self.behind_proxy = behind_proxy
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)

    def trusts(self, address: str | None) -> bool:
        """Whether `address` is a trusted proxy (always False unless behind_proxy)."""
        if not self.behind_proxy or not address:
            return False
        parsed = parse_address(address)
        return parsed is not None and any(parsed in network for network in self._networks)

    def origin(self, request: web.Request) -> Origin:
        peer = request.remote or ""
        own = Origin(request.scheme, request.host, peer)
        if not self.trusts(peer):
            return own
        hops, client = 1, peer
        for address in reversed(_values(request, "X-Forwarded-For")):
            client = address
            if not self.trusts(address):
                break
            hops += 1
        scheme = _at_hop(_values(request, "X-Forwarded-Proto"), hops)
        host = _at_hop(_values(request, "X-Forwarded-Host"), hops)
        return Origin(
            scheme.lower() if scheme and scheme.lower() in _SCHEMES else own.scheme,
            host if host and _HOST.match(host) else own.host,
            client,
        )


def _values(request: web.Request, name: str) -> list[str]:
    """Every comma-separated value of every `name` header line, in order."""
    return [v.strip() for line in request.headers.getall(name, ()) for v in line.split(",") if v.strip()]


def _at_hop(values: list[str], hops: int) -> str | None:
    """The value written by the proxy `hops` from the right; the oldest one if fewer were appended
    (proxies that overwrite the header rather than append to it)."""
    if not values:
        return None
    return values[-hops] if len(values) >= hops else values[0]
