"""`forwarded.ProxyTrust`: whose X-Forwarded-* count, and which hop's values are read."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from engine.forwarded import Origin, ProxyTrust, parse_address


class _Transport:
    def __init__(self, peer: str) -> None:
        self._peer = (peer, 40000)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self._peer, "sockname": ("127.0.0.1", 3000)}.get(name, default)


def origin(trust: ProxyTrust, peer: str, *headers: tuple[str, str], host: str = "engine.internal") -> Origin:
    request = make_mocked_request("GET", "/x", headers=CIMultiDict([("Host", host), *headers]),
                                  transport=_Transport(peer))
    return trust.origin(request)


BEHIND = ProxyTrust(True, ["127.0.0.1/32", "192.0.2.0/24"])


def test_not_behind_a_proxy_nobody_is_trusted():
    trust = ProxyTrust(False, ["127.0.0.1/32"])
    assert origin(trust, "127.0.0.1", ("X-Forwarded-Host", "b.example")) == Origin("http", "engine.internal", "127.0.0.1")


def test_an_untrusted_peer_gets_its_own_host_and_scheme():
    got = origin(BEHIND, "203.0.113.5", ("X-Forwarded-Host", "b.example"), ("X-Forwarded-Proto", "https"),
                 ("X-Forwarded-For", "127.0.0.1"))
    assert got == Origin("http", "engine.internal", "203.0.113.5")


def test_a_trusted_peer_single_values():
    got = origin(BEHIND, "127.0.0.1", ("X-Forwarded-Host", "b.example"), ("X-Forwarded-Proto", "https"),
                 ("X-Forwarded-For", "203.0.113.5"))
    assert got == Origin("https", "b.example", "203.0.113.5")


def test_the_rightmost_untrusted_hop_is_the_client_and_its_values_are_used():
    got = origin(BEHIND, "127.0.0.1",
                 ("X-Forwarded-For", "198.51.100.1, 203.0.113.5, 192.0.2.3"),
                 ("X-Forwarded-Host", "forged.example, b.example, engine.internal"),
                 ("X-Forwarded-Proto", "http, https, http"))
    assert got == Origin("https", "b.example", "203.0.113.5")


def test_values_split_over_several_header_lines_count_as_one_list():
    got = origin(BEHIND, "127.0.0.1", ("X-Forwarded-Host", "forged.example"), ("X-Forwarded-Host", "b.example"))
    assert got.host == "b.example"


def test_proxies_that_overwrite_rather_than_append_give_one_value():
    got = origin(BEHIND, "127.0.0.1", ("X-Forwarded-For", "203.0.113.5, 192.0.2.3"), ("X-Forwarded-Host", "b.example"))
    assert got == Origin("http", "b.example", "203.0.113.5")


@pytest.mark.parametrize("host", ["b.example/x", "b example", "b.example@evil", "", "-", "b.example:99999999"])
def test_a_forwarded_host_that_is_not_a_host_is_ignored(host):
    assert origin(BEHIND, "127.0.0.1", ("X-Forwarded-Host", host)).host == "engine.internal"


@pytest.mark.parametrize("host", ["b.example", "b.example:8443", "[2001:db8::1]", "[2001:db8::1]:443", "203.0.113.5"])
def test_a_forwarded_host_with_a_port_or_an_ip_is_kept(host):
    assert origin(BEHIND, "127.0.0.1", ("X-Forwarded-Host", host)).host == host


def test_a_forwarded_proto_other_than_http_or_https_is_ignored():
    assert origin(BEHIND, "127.0.0.1", ("X-Forwarded-Proto", "gopher")).scheme == "http"
    assert origin(BEHIND, "127.0.0.1", ("X-Forwarded-Proto", "HTTPS")).scheme == "https"


@pytest.mark.parametrize(("host", "hostname"), [("Shop.Example:3000", "shop.example"), ("shop.example.", "shop.example"),
                                                 ("[::1]:3000", "[::1]"), ("127.0.0.1", "127.0.0.1")])
def test_hostname_drops_the_port(host, hostname):
    assert Origin("http", host, "").hostname == hostname


@pytest.mark.parametrize(("text", "expected"), [("203.0.113.5", "203.0.113.5"), ("203.0.113.5:4000", "203.0.113.5"),
                                                 ("[2001:db8::1]:443", "2001:db8::1"), ("::ffff:192.0.2.3", "192.0.2.3"),
                                                 ("unknown", None), ("", None)])
def test_parse_address(text, expected):
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == expected
