"""Attacks by cookie tossing (issue 13, item 8; behavior.md, Twilio.Response: cookies).

Two services, `shop` and `othersvc`, are sibling subdomains of `localhost`. A handler of `shop`,
in Python or JavaScript, sets cookies scoped to the parent domain, to its sibling, and to its own
host, through `set_cookie`/`setCookie` attributes and raw `Set-Cookie` headers. What reaches the
client keeps only a `Domain` naming `shop`'s own host; any other `Domain` is removed (the cookie
becomes host-only) and the removal is logged as a warning.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
FRONT = PROJECTS / "front"
FUNCTIONS = {"python": "/cookie", "javascript": "/cookie-js"}
VALUES = {"python": "py", "javascript": "js"}


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(
        f"shop={FRONT}", f"othersvc={FRONT}", backend=backend, args=["--domain", "localhost"],
        config={"min_idle": 1, "max_workers": 2},
    )


def set_cookies(engine, language: str, **params) -> httpx.Response:
    with engine.client() as client:
        response = client.get(FUNCTIONS[language], params=params, headers={"Host": f"shop.localhost:{engine.port}"})
    assert response.status_code == 200, response.text
    return response


def warnings_for(engine, invocation_id: str) -> list[dict]:
    found = []
    for line in engine.logs().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "cookie_domain_removed" and record.get("invocation_id") == invocation_id:
                found.append(record)
    return found


@pytest.mark.parametrize("language", ["python", "javascript"])
@pytest.mark.parametrize("domain", [".localhost", "localhost", "othersvc.localhost", ".othersvc.localhost",
                                    "LOCALHOST", "evil.example", ""])
def test_set_cookie_domain_of_the_parent_or_a_sibling_is_removed(engine, language, domain):
    response = set_cookies(engine, language, attr=[f"Domain={domain}", "Path=/", "HttpOnly"])
    assert response.headers.get_list("set-cookie") == [f"sid={VALUES[language]};Path=/;HttpOnly"]
    deadline = time.monotonic() + 5
    while not (records := warnings_for(engine, response.headers["x-request-id"])):
        assert time.monotonic() < deadline, "no cookie_domain_removed warning logged"
        time.sleep(0.05)
    assert records[0]["level"] == "warning"
    assert records[0]["service"] == "shop" and records[0]["cookie"] == "sid" and records[0]["domain"] == domain


@pytest.mark.parametrize("language", ["python", "javascript"])
@pytest.mark.parametrize("domain", ["shop.localhost", ".shop.localhost", "Shop.LocalHost"])
def test_set_cookie_domain_of_its_own_host_is_kept(engine, language, domain):
    response = set_cookies(engine, language, attr=[f"Domain={domain}", "Secure"])
    assert response.headers.get_list("set-cookie") == [f"sid={VALUES[language]};Domain={domain};Secure"]


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_raw_set_cookie_headers_are_scoped_too(engine, language):
    raw = [
        "a=1; Domain=.localhost; Path=/",  # the parent domain
        "b=2; path=/; DOMAIN = othersvc.localhost ; Max-Age=60",  # a sibling, odd spelling and spacing
        "c=3; Domain=shop.localhost; Domain=.localhost",  # the last Domain wins in browsers: removed
        'd="x;Domain=.localhost"; Secure',  # a quoted value does not hide the attribute from browsers
        "e=5; Domain=shop.localhost",  # its own host
        "f=6",
    ]
    response = set_cookies(engine, language, raw=raw)
    assert response.headers.get_list("set-cookie") == [
        "a=1; Path=/",
        "b=2; path=/; Max-Age=60",
        "c=3; Domain=shop.localhost",
        'd="x; Secure',
        "e=5; Domain=shop.localhost",
        "f=6",
    ]


def test_the_sibling_service_itself_may_scope_to_its_own_host(engine):
    with engine.client() as client:
        response = client.get("/cookie", params={"raw": "k=1; Domain=othersvc.localhost"},
                              headers={"Host": f"othersvc.localhost:{engine.port}"})
    assert response.headers.get_list("set-cookie") == ["k=1; Domain=othersvc.localhost"]
