"""Keeping a service's cookies on its own host (behavior.md, Twilio.Response: cookies).

Services are sibling subdomains of one domain, so a `Set-Cookie` with `Domain=<the domain>` from
one of them would reach every other service's users (cookie tossing). A `Domain` attribute is kept
only when it names the request's own host; any other is removed, which makes the cookie host-only.

The attributes are read the way browsers read them (RFC 6265 §5.2: the value ends at the first
`;`, then `;`-separated `name[=value]` attributes, names case-insensitive, whitespace trimmed), not
with `http.cookies.SimpleCookie`: it honours quotes, so for `a="x;Domain=.localhost"` it sees a
value where a browser sees a `Domain` attribute, and it rewrites what it re-serialises. Attributes
other than a removed `Domain` are kept byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from multidict import CIMultiDict


@dataclass(frozen=True)
class RemovedDomain:
    """One `Domain` attribute taken off one cookie, for the warning."""

    cookie: str
    domain: str


def scope_to_host(set_cookie: str, hostname: str) -> tuple[str, list[str]]:
    """The `Set-Cookie` value with every `Domain` attribute not naming `hostname` removed.

    Returns the value and the removed domains. `hostname` is the request's host without its
    port, lowercased; a `Domain` matches when, without its leading dots, it is the same name.
    """
    cookie, *attributes = set_cookie.split(";")
    kept = [cookie]
    removed = []
    for attribute in attributes:
        name, _, value = attribute.partition("=")
        if name.strip().lower() == "domain":
            domain = value.strip()
            if domain.lstrip(".").lower() != hostname or not hostname:
                removed.append(domain)
                continue
        kept.append(attribute)
    return (";".join(kept), removed) if removed else (set_cookie, [])


def scope_headers(headers: CIMultiDict[str], hostname: str) -> list[RemovedDomain]:
    """Apply `scope_to_host` to every `Set-Cookie` line, in place and in order."""
    if "Set-Cookie" not in headers:
        return []
    changed: list[RemovedDomain] = []
    items = []
    for name, value in headers.items():
        if name.lower() == "set-cookie":
            value, removed = scope_to_host(value, hostname)
            cookie_name = value.split(";", 1)[0].partition("=")[0].strip()
            changed.extend(RemovedDomain(cookie_name, domain) for domain in removed)
        items.append((name, value))
    if changed:
        headers.clear()
        headers.extend(items)
    return changed
