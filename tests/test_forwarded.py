"""Attacks on X-Forwarded-* behind a proxy (issue 13, item 9).

Two services, `a` and `b`, from one project (so one AUTH_TOKEN: a signature made for one
service's URL would be valid for the other's if the engine checked it against the wrong URL),
served with `--behind-proxy` and `trusted_proxies = ["127.0.0.1"]`. Clients connect from
127.0.0.1 (the trusted proxy) or 127.0.0.2 (anyone else). The forwarded host, when believed, is
the one the request is routed by, signed against and given as `context.DOMAIN_NAME`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

PROJECTS = Path(__file__).resolve().parent / "projects"
FRONT = PROJECTS / "front"
AUTH_TOKEN = "front-test-auth-token-4c1d"  # tests/projects/front/.env
SIDS = {"a": "ZS" + "a" * 32, "b": "ZS" + "b" * 32}
TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"
EDGE = "198.51.100.7"  # a second, outer proxy, only ever named in X-Forwarded-For


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(
        f"a={FRONT}", f"b={FRONT}", backend=backend, args=["--domain", "localhost", "--behind-proxy"],
        config={"trusted_proxies": [TRUSTED, EDGE], "min_idle": 1, "max_workers": 2,
                "services": {name: {"service_sid": sid} for name, sid in SIDS.items()}},
    )


def client(engine, source: str) -> httpx.Client:
    return httpx.Client(base_url=engine.url, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def sign(url: str) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, {})


def whoami(engine, source: str, headers: dict[str, str]) -> httpx.Response:
    with client(engine, source) as c:
        return c.get("/whoami", headers=headers)


def signed(engine, source: str, signed_url_base: str, headers: dict[str, str]) -> httpx.Response:
    token = uuid.uuid4().hex[:12]
    with client(engine, source) as c:
        return c.get(f"/signed?token={token}",
                     headers={**headers, "X-Twilio-Signature": sign(f"{signed_url_base}/signed?token={token}")})


# --- clients that are not trusted proxies ------------------------------------------------------


def test_untrusted_client_cannot_route_to_another_service_with_x_forwarded_host(engine):
    host = f"a.localhost:{engine.port}"
    response = whoami(engine, UNTRUSTED, {"Host": host, "X-Forwarded-Host": "b.localhost", "X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response.json() == {"sid": SIDS["a"], "domain": host}


def test_untrusted_client_signature_is_checked_against_the_host_it_sent(engine):
    host = f"a.localhost:{engine.port}"
    forged = {"Host": host, "X-Forwarded-Host": "b.localhost", "X-Forwarded-Proto": "https"}
    # A signature made for service b's public URL is not accepted by service a ...
    assert signed(engine, UNTRUSTED, "https://b.localhost", forged).status_code == 403
    # ... nor one for a's URL with the forged scheme; the URL it connected to is what is checked.
    assert signed(engine, UNTRUSTED, f"https://{host}", forged).status_code == 403
    ok = signed(engine, UNTRUSTED, f"http://{host}", forged)
    assert ok.status_code == 200
    assert ok.json()["sid"] == SIDS["a"]


def test_untrusted_client_forwarded_for_chain_naming_a_trusted_proxy_is_not_believed(engine):
    host = f"a.localhost:{engine.port}"
    response = whoami(engine, UNTRUSTED, {"Host": host, "X-Forwarded-For": TRUSTED, "X-Forwarded-Host": "b.localhost"})
    assert response.json()["sid"] == SIDS["a"]


# --- a trusted proxy -----------------------------------------------------------------------------


def test_trusted_proxy_forwarded_proto_and_host_are_routed_and_signed_with(engine):
    proxied = {"Host": "engine.internal", "X-Forwarded-Host": "b.localhost", "X-Forwarded-Proto": "https",
               "X-Forwarded-For": "203.0.113.9"}
    response = whoami(engine, TRUSTED, proxied)
    assert response.status_code == 200
    assert response.json() == {"sid": SIDS["b"], "domain": "b.localhost"}
    ok = signed(engine, TRUSTED, "https://b.localhost", proxied)
    assert ok.status_code == 200
    assert ok.json()["sid"] == SIDS["b"]
    assert signed(engine, TRUSTED, "http://engine.internal", proxied).status_code == 403


def test_forged_leftmost_forwarded_values_in_a_chain_are_ignored(engine):
    """The client sent X-Forwarded-* of its own; the proxy appended the real ones on the right."""
    chain = {"Host": "engine.internal", "X-Forwarded-For": "198.51.100.1, 203.0.113.9",
             "X-Forwarded-Host": "b.localhost, a.localhost", "X-Forwarded-Proto": "https, http"}
    response = whoami(engine, TRUSTED, chain)
    assert response.json() == {"sid": SIDS["a"], "domain": "a.localhost"}
    assert signed(engine, TRUSTED, "https://b.localhost", chain).status_code == 403
    assert signed(engine, TRUSTED, "http://a.localhost", chain).status_code == 200


def test_two_trusted_proxies_are_read_at_the_outer_ones_hop(engine):
    """Edge proxy (trusted, named in X-Forwarded-For) saw b.localhost; the inner proxy appended its own
    view (`engine.internal`); a value the client put first is ignored."""
    chain = {"Host": "engine.internal", "X-Forwarded-For": f"198.51.100.1, 203.0.113.9, {EDGE}",
             "X-Forwarded-Host": "a.localhost, b.localhost, engine.internal",
             "X-Forwarded-Proto": "http, https, http"}
    response = whoami(engine, TRUSTED, chain)
    assert response.json() == {"sid": SIDS["b"], "domain": "b.localhost"}
    assert signed(engine, TRUSTED, "https://b.localhost", chain).status_code == 200


def test_trusted_proxy_forwarded_values_that_are_not_a_host_or_scheme_are_ignored(engine):
    host = f"a.localhost:{engine.port}"
    response = whoami(engine, TRUSTED, {"Host": host, "X-Forwarded-Host": "b.localhost/evil path",
                                        "X-Forwarded-Proto": "javascript"})
    assert response.json() == {"sid": SIDS["a"], "domain": host}
    assert signed(engine, TRUSTED, f"http://{host}", {"Host": host, "X-Forwarded-Proto": "javascript"}).status_code == 200


def test_cookie_domain_is_checked_against_the_forwarded_host(engine):
    proxied = {"Host": "engine.internal", "X-Forwarded-Host": "b.localhost"}
    with client(engine, TRUSTED) as c:
        kept = c.get("/cookie", params={"raw": "k=1; Domain=b.localhost"}, headers=proxied)
        dropped = c.get("/cookie", params={"raw": "k=1; Domain=engine.internal"}, headers=proxied)
    assert kept.headers.get_list("set-cookie") == ["k=1; Domain=b.localhost"]
    assert dropped.headers.get_list("set-cookie") == ["k=1"]


# --- without behind_proxy -------------------------------------------------------------------------


def test_without_behind_proxy_even_loopback_forwarded_headers_are_ignored(engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    plain = engine_factory(f"a={FRONT}", f"b={FRONT}", backend=backend, args=["--domain", "localhost"],
                           config={"min_idle": 1, "services": {n: {"service_sid": s} for n, s in SIDS.items()}})
    host = f"a.localhost:{plain.port}"
    response = whoami(plain, TRUSTED, {"Host": host, "X-Forwarded-Host": "b.localhost", "X-Forwarded-Proto": "https"})
    assert response.json() == {"sid": SIDS["a"], "domain": host}
