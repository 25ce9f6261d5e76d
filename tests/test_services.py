"""Conformance: several services in one engine (DESIGN "Services", behavior.md `context`).

Two projects served at once with `--domain localhost`: the Host header `<service>.localhost:PORT`
picks the service, an unknown host is a 404 that names no service, and neither service sees the
other's `.env` values, functions, assets or workers. `.env` values travel only in the `init`
message, so no process environment or command line ever holds them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
ALPHA = PROJECTS / "svc-alpha"
BETA = PROJECTS / "svc-beta"

SECRETS = {
    "alpha": ["alpha-secret-value-7f3a91", "alpha-shared-value-c2d4"],
    "beta": ["beta-secret-value-e81b07", "beta-shared-value-95fe"],
}


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(
        f"alpha={ALPHA}", f"beta={BETA}", backend=backend, args=["--domain", "localhost"], config={"min_idle": 1, "max_workers": 2}
    )


def get(engine, host: str, path: str, **params: str) -> httpx.Response:
    with engine.client() as client:
        return client.get(path, params=params, headers={"Host": host})


def whoami(engine, service: str) -> dict:
    response = get(engine, f"{service}.localhost:{engine.port}", "/whoami")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("service", ["alpha", "beta"])
def test_host_header_picks_the_service_and_is_its_domain_name(engine, service):
    data = whoami(engine, service)
    assert data["service"] == service
    assert data["domain"] == f"{service}.localhost:{engine.port}"


def test_host_without_a_port_still_picks_the_service(engine):
    response = get(engine, "alpha.localhost", "/whoami")
    assert response.status_code == 200
    assert response.json()["service"] == "alpha"
    assert response.json()["domain"] == "alpha.localhost"


@pytest.mark.parametrize(
    "host",
    ["gamma.localhost:{port}", "127.0.0.1:{port}", "localhost:{port}", "alpha.example.com:{port}", "xalpha.localhost:{port}", "alpha.beta.localhost:{port}"],
)
def test_unknown_host_is_404_naming_no_service(engine, host):
    host = host.format(port=engine.port)
    response = get(engine, host, "/whoami")
    assert response.status_code == 404
    # Echoing the Host the client sent is fine; naming a service it did not ask for is not.
    body = response.text.lower().replace(host.lower(), "")
    assert "alpha" not in body and "beta" not in body, response.text


def test_each_service_sees_only_its_own_functions_and_assets(engine):
    alpha, beta = whoami(engine, "alpha"), whoami(engine, "beta")
    assert alpha["functions"] == ["alpha-only", "scan", "whoami"]
    assert alpha["assets"] == ["/alpha.txt"]
    assert beta["functions"] == ["beta-only", "scan", "whoami"]
    assert beta["assets"] == ["/beta.txt"]
    a, b = f"alpha.localhost:{engine.port}", f"beta.localhost:{engine.port}"
    assert get(engine, a, "/alpha-only").text == "only in alpha"
    assert get(engine, a, "/alpha.txt").content == b"asset of alpha\n"
    assert get(engine, a, "/beta-only").status_code == 404
    assert get(engine, a, "/beta.txt").status_code == 404
    assert get(engine, b, "/alpha-only").status_code == 404
    assert get(engine, b, "/alpha.txt").status_code == 404


def test_each_service_sees_only_its_own_env_values(engine):
    assert whoami(engine, "alpha")["context"] == {
        "ALPHA_SECRET": SECRETS["alpha"][0], "BETA_SECRET": None, "SHARED_NAME": SECRETS["alpha"][1],
    }
    assert whoami(engine, "beta")["context"] == {
        "ALPHA_SECRET": None, "BETA_SECRET": SECRETS["beta"][0], "SHARED_NAME": SECRETS["beta"][1],
    }


def test_env_values_are_not_in_any_worker_process_environment(engine):
    for service in ("alpha", "beta"):
        environ = whoami(engine, service)["environ"]
        values = "\n".join(f"{k}={v}" for k, v in environ.items())
        for secret in SECRETS["alpha"] + SECRETS["beta"]:
            assert secret not in values, f"{secret} is in the environment of a {service} worker"
        assert "ALPHA_SECRET" not in environ and "BETA_SECRET" not in environ


@pytest.mark.parametrize("looking, owner", [("beta", "alpha"), ("alpha", "beta"), ("alpha", "alpha"), ("beta", "beta")])
def test_no_worker_finds_a_secret_in_any_process_environment_or_command_line(engine, looking, owner):
    for secret in SECRETS[owner]:
        response = get(engine, f"{looking}.localhost:{engine.port}", "/scan", needle=secret)
        assert response.status_code == 200, response.text
        assert response.json() == {"found": []}, f"a {looking} worker found {owner}'s {secret}"


def test_services_never_share_a_worker(engine):
    alpha = {whoami(engine, "alpha")["worker"] for _ in range(6)}
    beta = {whoami(engine, "beta")["worker"] for _ in range(6)}
    assert not alpha & beta
    # Different modules of one worker share host:pid; compare that too.
    assert not {w.rsplit(":", 1)[0] for w in alpha} & {w.rsplit(":", 1)[0] for w in beta}
