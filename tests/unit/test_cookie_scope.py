"""`cookie_scope`: which `Domain` attributes of a `Set-Cookie` value survive, read as browsers read them."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from multidict import CIMultiDict

from engine.cookie_scope import RemovedDomain, scope_headers, scope_to_host


@pytest.mark.parametrize(
    ("value", "expected", "removed"),
    [
        ("a=1", "a=1", []),
        ("a=1; Path=/; HttpOnly", "a=1; Path=/; HttpOnly", []),
        ("a=1; Domain=shop.localhost", "a=1; Domain=shop.localhost", []),
        ("a=1; Domain=.shop.localhost", "a=1; Domain=.shop.localhost", []),
        ("a=1; domain=SHOP.localhost", "a=1; domain=SHOP.localhost", []),
        ("a=1; Domain=.localhost; Path=/", "a=1; Path=/", [".localhost"]),
        ("a=1; Domain=localhost", "a=1", ["localhost"]),
        ("a=1; Domain=othersvc.localhost", "a=1", ["othersvc.localhost"]),
        ("a=1; Domain=sub.shop.localhost", "a=1", ["sub.shop.localhost"]),
        ("a=1; Domain=shop.localhost.", "a=1", ["shop.localhost."]),
        ("a=1; Domain=", "a=1", [""]),
        ("a=1;  DOMAIN  =  .localhost  ;Secure", "a=1;Secure", [".localhost"]),
        ("a=1; Domain=shop.localhost; Domain=.localhost", "a=1; Domain=shop.localhost", [".localhost"]),
        ('a="x;Domain=.localhost"', 'a="x', ['.localhost"']),
        ("a=1; Domain=.localhost, b=2; Domain=.localhost", "a=1", [".localhost, b=2", ".localhost"]),
        ("Domain=.localhost", "Domain=.localhost", []),  # a cookie *named* Domain is not an attribute
    ],
)
def test_scope_to_host(value, expected, removed):
    assert scope_to_host(value, "shop.localhost") == (expected, removed)


def test_an_empty_host_keeps_no_domain():
    assert scope_to_host("a=1; Domain=.localhost", "") == ("a=1", [".localhost"])


def test_simple_cookie_would_miss_the_domain_a_browser_sees():
    """Why not `http.cookies`: it honours quotes, so it sees no Domain where browsers see one."""
    jar = SimpleCookie()
    jar.load('a="x;Domain=.localhost"')
    assert jar["a"]["domain"] == ""
    assert scope_to_host('a="x;Domain=.localhost"', "shop.localhost")[1] == ['.localhost"']


def test_scope_headers_keeps_order_and_other_headers():
    headers = CIMultiDict([("X-A", "1"), ("Set-Cookie", "a=1; Domain=.localhost"), ("set-cookie", "b=2"),
                           ("X-B", "2"), ("Set-Cookie", "c=3; Domain=shop.localhost")])
    assert scope_headers(headers, "shop.localhost") == [RemovedDomain("a", ".localhost")]
    assert list(headers.items()) == [("X-A", "1"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2"),
                                     ("X-B", "2"), ("Set-Cookie", "c=3; Domain=shop.localhost")]


def test_scope_headers_without_cookies_changes_nothing():
    headers = CIMultiDict([("X-A", "1")])
    assert scope_headers(headers, "shop.localhost") == []
    assert list(headers.items()) == [("X-A", "1")]
