"""`http_conn`: who counts as one client for the connection caps, and the counting itself."""

from __future__ import annotations

import pytest

from engine.forwarded import ProxyTrust
from engine.http_conn import ConnectionCounts, ConnectionLimits, client_key

LIMITS = ConnectionLimits(max_request_line_bytes=16384, max_header_bytes=15000, max_headers=90,
                          header_read_timeout_s=10, keepalive_timeout_s=75, max_connections_per_client=2,
                          max_connections=4)


@pytest.mark.parametrize(("peer", "key"), [
    ("203.0.113.5", "203.0.113.5"),
    ("::ffff:203.0.113.5", "203.0.113.5"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("", ""),
])
def test_client_key(peer, key):
    assert client_key(peer) == key


def test_per_client_then_global_cap():
    counts = ConnectionCounts(LIMITS, ProxyTrust(False, []))
    a1, a2 = counts.admit("203.0.113.5"), counts.admit("203.0.113.5")
    assert a1 == a2 == ("203.0.113.5", None)
    assert counts.admit("203.0.113.5") == (None, "max_connections_per_client")
    assert counts.admit("2001:db8::1")[1] is None and counts.admit("2001:db8::2")[1] is None
    assert counts.admit("198.51.100.1") == (None, "max_connections")
    counts.release("203.0.113.5")
    assert counts.admit("203.0.113.5") == ("203.0.113.5", None)
    assert counts.total == 4


def test_trusted_proxies_are_exempt_from_the_per_client_cap_only():
    counts = ConnectionCounts(LIMITS, ProxyTrust(True, ["127.0.0.1/32"]))
    assert [counts.admit("127.0.0.1") for _ in range(4)] == [("", None)] * 4
    assert counts.admit("127.0.0.1") == (None, "max_connections")


def test_the_per_client_cap_applies_to_loopback_when_not_behind_a_proxy():
    counts = ConnectionCounts(LIMITS, ProxyTrust(False, ["127.0.0.1/32"]))
    counts.admit("127.0.0.1")
    counts.admit("127.0.0.1")
    assert counts.admit("127.0.0.1") == (None, "max_connections_per_client")


def test_head_budget_is_request_line_plus_headers():
    assert LIMITS.head_budget == 16384 + 15000 + 2
    assert LIMITS.handler_args() == {"max_line_size": 16384, "max_field_size": 15000, "max_headers": 90,
                                     "keepalive_timeout": 75}
