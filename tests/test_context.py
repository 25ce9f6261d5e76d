"""Conformance: the `context` and "Globals" sections of behavior.md.

`PATH`, `DOMAIN_NAME`, `SERVICE_SID`, `ENVIRONMENT_SID`, every `.env` variable (overriding the
built-ins), and `get_twilio_client()` (500 when the service has no credentials); the `Twilio` and
`Runtime` globals, usable at module top level.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
CONTEXT = PROJECTS / "context"
CONTEXT_ENV = PROJECTS / "context-env"

SERVICE_SID = "ZS0123456789abcdef0123456789abcdef"
ENVIRONMENT_SID = "ZEfedcba9876543210fedcba9876543210"
# Twilio SIDs: two letters and 32 hex digits. Generated ids follow the same shape.
SID_SHAPE = {"SERVICE_SID": re.compile(r"^ZS[0-9a-f]{32}$"), "ENVIRONMENT_SID": re.compile(r"^ZE[0-9a-f]{32}$")}


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    """The `context` project with its SIDs configured."""
    _require_docker(backend, request)
    config = {"services": {"context": {"service_sid": SERVICE_SID, "environment_sid": ENVIRONMENT_SID}}}
    return module_engine_factory(CONTEXT, backend=backend, config=config)


@pytest.fixture(scope="module")
def generated_engine(module_engine_factory, backend, request):
    """The same project under another service name and no configured SIDs."""
    _require_docker(backend, request)
    return module_engine_factory(f"generated={CONTEXT}", backend=backend, config={"min_idle": 2})


@pytest.fixture(scope="module")
def env_engine(module_engine_factory, backend, request):
    """A project whose .env sets the four built-ins and credentials."""
    _require_docker(backend, request)
    return module_engine_factory(CONTEXT_ENV, backend=backend)


def get_ctx(engine, path: str = "/ctx", **kwargs) -> dict:
    with engine.client() as client:
        response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_path_is_the_request_path_without_query(engine):
    assert get_ctx(engine, "/ctx?x=1&PATH=nope")["PATH"] == "/ctx"
    assert get_ctx(engine, "/sub/ctx?y=2")["PATH"] == "/sub/ctx"


def test_domain_name_is_the_request_host_header(engine):
    assert get_ctx(engine)["DOMAIN_NAME"] == f"127.0.0.1:{engine.port}"
    # With a single service every Host reaches it, and DOMAIN_NAME follows the header.
    assert get_ctx(engine, headers={"Host": "example.test:8080"})["DOMAIN_NAME"] == "example.test:8080"
    assert get_ctx(engine, headers={"Host": "fn.example.test"})["DOMAIN_NAME"] == "fn.example.test"


def test_configured_service_and_environment_sids_are_on_context(engine):
    ctx = get_ctx(engine)
    assert ctx["SERVICE_SID"] == SERVICE_SID
    assert ctx["ENVIRONMENT_SID"] == ENVIRONMENT_SID


def test_env_file_variables_are_on_context(engine):
    assert get_ctx(engine)["GREETING"] == "hello from .env"


def test_generated_sids_are_well_formed_and_stable_across_requests_and_workers(generated_engine):
    seen = [get_ctx(generated_engine) for _ in range(6)]
    sids = {(ctx["SERVICE_SID"], ctx["ENVIRONMENT_SID"]) for ctx in seen}
    assert len(sids) == 1, sids
    service_sid, environment_sid = sids.pop()
    assert SID_SHAPE["SERVICE_SID"].match(service_sid), service_sid
    assert SID_SHAPE["ENVIRONMENT_SID"].match(environment_sid), environment_sid


def test_generated_sids_survive_an_engine_restart_and_differ_between_services(engine_factory, backend, request):
    """Stable ids: derived from the service, like a hosted service's SIDs that never change."""
    _require_docker(backend, request)
    first = engine_factory(f"stable-one={CONTEXT}", backend=backend)
    before = get_ctx(first)
    first.stop()
    again = engine_factory(f"stable-one={CONTEXT}", backend=backend)
    after = get_ctx(again)
    again.stop()
    other = get_ctx(engine_factory(f"stable-two={CONTEXT}", backend=backend))
    assert (before["SERVICE_SID"], before["ENVIRONMENT_SID"]) == (after["SERVICE_SID"], after["ENVIRONMENT_SID"])
    assert other["SERVICE_SID"] != before["SERVICE_SID"]
    assert other["ENVIRONMENT_SID"] != before["ENVIRONMENT_SID"]


def test_env_file_values_override_the_four_built_ins(env_engine):
    ctx = get_ctx(env_engine, "/ctx?a=1")
    assert ctx == {
        "PATH": "/path-from-env",
        "DOMAIN_NAME": "domain-from-env.example",
        "SERVICE_SID": "ZSeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "ENVIRONMENT_SID": "ZEeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "GREETING": "hello from context-env",
    }


@pytest.mark.parametrize("path", ["/client", "/client-camel"])
def test_get_twilio_client_without_credentials_raises_and_the_uncaught_raise_is_a_500(engine, path):
    with engine.client() as client:
        response = client.get(path)
    assert response.status_code == 500
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body = response.json()
    assert set(body) == {"message", "name"}, body
    assert body["message"]


def test_get_twilio_client_builds_the_official_client_from_the_env_credentials(env_engine):
    with env_engine.client() as client:
        snake = client.get("/client")
        camel = client.get("/client-camel")
    assert snake.status_code == 200, snake.text
    assert snake.json() == {"account_sid": "AC00000000000000000000000000000001", "class": "twilio.rest.Client"}
    assert camel.status_code == 200, camel.text
    assert camel.json() == {"account_sid": "AC00000000000000000000000000000001"}


# --- globals ---------------------------------------------------------------------------------


def test_twilio_global_is_the_official_library_and_usable_at_module_top_level(engine):
    with engine.client() as client:
        response = client.get("/globals")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["checks"] == {
        "MessagingResponse": True,
        "VoiceResponse": True,
        "FaxResponse": True,
        "AccessToken": True,
        "grants": True,
        "validateRequest accepts": True,
        "validateRequest rejects": True,
    }
    assert data["at_import"] == {
        "twiml": '<?xml version="1.0" encoding="UTF-8"?><Response />',
        "response": "Response",
        "functions": ["client", "client-camel", "ctx", "globals", "sub/ctx", "sync"],
        "assets": ["/note.txt"],
    }


def test_runtime_get_sync_returns_the_sync_service_client(env_engine):
    with env_engine.client() as client:
        response = client.get("/sync")
    assert response.status_code == 200, response.text
    assert response.json() == {"type": "ServiceContext", "has_documents": True, "camel_type": "ServiceContext"}


def test_runtime_get_sync_without_credentials_is_a_500(engine):
    with engine.client() as client:
        response = client.get("/sync")
    assert response.status_code == 500
    assert set(response.json()) == {"message", "name"}
