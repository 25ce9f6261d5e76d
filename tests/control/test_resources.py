"""The resources' shapes, driven by the official Python `twilio` library and plain HTTP, on both
stores: the embedded SQLite one and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.conftest import EngineLauncher
from tests.control.conftest import ControlEngine, error, make_service, ok, start_control_engine, upload


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None: the embedded store in data_dir (unless parametrised with BOTH); else a fresh PostgreSQL database."""
    return request.getfixturevalue("pg_url") if getattr(request, "param", "sqlite") == "postgres" else None


#: The tests that also run on PostgreSQL: every store operation of the API (CRUD and its 409s
#: through the twilio library, blobs, builds, concurrent writers, text the store cannot hold).
#: The rest exercise API shapes the store does not change; each PostgreSQL engine costs ~15 s more.
BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def control_engine(engine_factory: EngineLauncher, tmp_path: Path, database_url: str | None) -> Iterator[ControlEngine]:
    yield start_control_engine(engine_factory, tmp_path / "data", database_url=database_url)

SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")


def twilio_client(control: ControlEngine, sid: str, token: str) -> Client:
    client = Client(sid, token)
    client.serverless.base_url = control.api.removesuffix("/v1")
    return client


@BOTH
def test_python_twilio_library_creates_and_lists_services_environments_variables(control_engine: ControlEngine) -> None:
    account = control_engine.account("team-a")
    client = twilio_client(control_engine, account.sid, account.token)
    v1 = client.serverless.v1
    service = v1.services.create(unique_name="shop", friendly_name="Shop")
    assert service.sid.startswith("ZS") and SID.match(service.sid) and service.account_sid == account.sid
    assert service.url == f"{control_engine.api}/Services/{service.sid}"
    assert set(service.links) == {"environments", "functions", "assets", "builds"}

    dev = v1.services("shop").environments.create(unique_name="dev-environment", domain_suffix="dev")
    prod = v1.services(service.sid).environments.create(unique_name="production")
    assert dev.sid.startswith("ZE") and dev.domain_name == "shop-dev.localhost" and dev.domain_suffix == "dev"
    assert prod.domain_name == "shop.localhost" and prod.build_sid is None
    assert [e.unique_name for e in v1.services(service.sid).environments.list()] == ["dev-environment", "production"]

    variable = v1.services(service.sid).environments(dev.sid).variables.create(key="GREETING", value="hello")
    assert variable.sid.startswith("ZV") and variable.key == "GREETING" and variable.value == "hello"
    updated = v1.services(service.sid).environments(dev.sid).variables(variable.sid).update(value="hi")
    assert updated.value == "hi"
    assert [(v.key, v.value) for v in v1.services(service.sid).environments(dev.sid).variables.list()] == [("GREETING", "hi")]
    assert v1.services(service.sid).environments(prod.sid).variables.list() == []

    assert [s.unique_name for s in v1.services.list()] == ["shop"]
    assert v1.services("shop").fetch().sid == service.sid
    try:
        v1.services.create(unique_name="shop", friendly_name="again")
        raise AssertionError("a duplicate UniqueName was accepted")
    except TwilioRestException as exc:
        assert exc.status == 409 and "shop" in exc.msg

    assert v1.services(service.sid).environments(dev.sid).variables(variable.sid).delete() is True
    assert v1.services(service.sid).environments(dev.sid).variables.list() == []
    assert v1.services(service.sid).delete() is True
    assert v1.services.list() == []


def test_lists_page_with_the_hosted_meta_and_absolute_next_page_urls(control_engine: ControlEngine) -> None:
    account = control_engine.account("team-a")
    with account.client() as c:
        for i in range(5):
            make_service(c, f"svc{i}")
        first = ok(c.get("/Services", params={"PageSize": 2}))
        meta = first["meta"]
        assert meta["key"] == "services" and meta["page"] == 0 and meta["page_size"] == 2
        assert meta["previous_page_url"] is None and meta["first_page_url"].startswith("http://127.0.0.1:")
        seen = [s["unique_name"] for s in first["services"]]
        url = meta["next_page_url"]
        while url:
            body = ok(c.get(url))
            seen += [s["unique_name"] for s in body["services"]]
            assert body["meta"]["previous_page_url"] is not None
            url = body["meta"]["next_page_url"]
        assert seen == [f"svc{i}" for i in range(5)]
        client = twilio_client(control_engine, account.sid, account.token)
        assert [s.unique_name for s in client.serverless.v1.services.list(page_size=2)] == seen


@BOTH
def test_function_versions_upload_and_content_round_trip(control_engine: ControlEngine) -> None:
    account = control_engine.account("team-a")
    code = b"exports.handler = (context, event, callback) => callback(null, 'hi');\n"
    with account.client() as c:
        service = make_service(c)["sid"]
        version = upload(c, service, "function", "/hello", code, "hello.js", visibility="protected")
        assert version["sid"].startswith("ZN") and version["path"] == "/hello" and version["visibility"] == "protected"
        function_sid = version["function_sid"]
        content = ok(c.get(f"/Services/{service}/Functions/{function_sid}/Versions/{version['sid']}/Content"))
        assert content["content"] == code.decode() and content["function_sid"] == function_sid
        listed = ok(c.get(f"/Services/{service}/Functions/{function_sid}/Versions"))
        assert listed["meta"]["key"] == "function_versions" and [v["sid"] for v in listed["function_versions"]] == [version["sid"]]
        asset = upload(c, service, "asset", "/style.css", b"body{}", "style.css", content_type="text/css")
        assert asset["asset_sid"].startswith("ZH") and asset["path"] == "/style.css"
        assert ok(c.get(f"/Services/{service}/Assets"))["assets"][0]["sid"] == asset["asset_sid"]
        error(c.get(f"/Services/{service}/Assets/{asset['asset_sid']}/Versions/{asset['sid']}/Content"), 404)


@BOTH
def test_builds_complete_with_versions_and_dependencies_as_the_clients_send_them(control_engine: ControlEngine) -> None:
    from tests.control.conftest import wait_build

    account = control_engine.account("team-a")
    with account.client() as c:
        service = make_service(c)["sid"]
        fn = upload(c, service, "function", "/hello", b"exports.handler = (c, e, cb) => cb(null, 'hi');\n", "hello.js")
        py = upload(c, service, "function", "/py", b"def handler(context, event, callback):\n    callback(None, 'py')\n",
                    "py.py", content_type="text/x-python")
        asset = upload(c, service, "asset", "/index.html", b"<h1>hi</h1>", "index.html", content_type="text/html")
        build = ok(c.post(f"/Services/{service}/Builds", data={
            "FunctionVersions": [fn["sid"], py["sid"]], "AssetVersions": [asset["sid"]],
            "Dependencies": '"[]"', "Runtime": "node22",
        }), 201)
        assert build["sid"].startswith("ZB") and build["status"] == "building" and build["runtime"] == "node22"
        assert {v["sid"] for v in build["function_versions"]} == {fn["sid"], py["sid"]}
        assert build["links"]["build_status"].endswith(f"/Builds/{build['sid']}/Status")
        done = wait_build(c, service, build["sid"])
        assert done["status"] == "completed", done
        assert done["dependencies"] == []
        assert ok(c.get(f"/Services/{service}/Builds"))["builds"][0]["sid"] == build["sid"]
    scraped = httpx.get(control_engine.engine.admin_url + "/metrics").text
    assert 'functions_engine_builds_total{status="completed"} 1.0' in scraped
    assert 'functions_engine_build_duration_seconds_count{status="completed"} 1.0' in scraped
    assert not re.search(r'\{[^}]*"(ZS|ZB|ZE|AC)[0-9a-f]{32}"', scraped), "a SID in a metric label"


def test_a_build_that_cannot_be_prepared_fails_and_says_why(control_engine: ControlEngine) -> None:
    from tests.control.conftest import wait_build

    account = control_engine.account("team-a")
    with account.client() as c:
        service = make_service(c)["sid"]
        fn = upload(c, service, "function", "/hello", b"exports.handler = (c, e, cb) => cb(null, 'hi');\n", "hello.js")
        # A git URL is refused by the engine's dependency rules before npm is ever run.
        deps = '[{"name":"leftpad","version":"git+https://example.invalid/leftpad.git"}]'
        build = ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"], "Dependencies": deps}), 201)
        done = wait_build(c, service, build["sid"])
        assert done["status"] == "failed"
        assert "leftpad" in (done["error"] or ""), done


def test_state_survives_a_restart_on_the_same_store(engine_factory, tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    first = start_control_engine(engine_factory, tmp_path / "data", database_url=database_url)
    account = first.account("team-a")
    with account.client() as c:
        sid = make_service(c)["sid"]
    first.engine.stop()
    second = start_control_engine(engine_factory, tmp_path / "data", database_url=database_url)
    with httpx.Client(base_url=second.api, auth=account.auth) as c:
        assert [s["sid"] for s in ok(c.get("/Services"))["services"]] == [sid]


@BOTH
def test_text_with_a_nul_character_is_refused_with_400_and_stores_nothing(control_engine: ControlEngine) -> None:
    """PostgreSQL's text cannot hold NUL: any field carrying one is a 400 on both stores, never a 500."""
    account = control_engine.account("team-a")
    with account.client() as c:
        error(c.post("/Services", data={"UniqueName": "shop", "FriendlyName": "Sh\x00op"}), 400, "FriendlyName", "NUL")
        service = make_service(c)["sid"]
        environment = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)["sid"]
        variables = f"/Services/{service}/Environments/{environment}/Variables"
        error(c.post(variables, data={"Key": "A", "Value": "x\x00y"}), 400, "Value", "NUL")
        assert ok(c.get(variables))["variables"] == []
        entry = ok(c.post(f"/Services/{service}/Functions", data={"FriendlyName": "/hi"}), 201)["sid"]
        boundary = "nulboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"Path\"\r\n\r\n/hi\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"Visibility\"\r\n\r\npublic\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"Content\"; filename*=utf-8''hi%00.js\r\n"
                "Content-Type: application/javascript\r\n\r\nexports.handler = () => {};\r\n"
                f"--{boundary}--\r\n").encode()
        refused = c.post(f"/Services/{service}/Functions/{entry}/Versions", content=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        error(refused, 400, "NUL")
        assert ok(c.get(f"/Services/{service}/Functions/{entry}/Versions"))["function_versions"] == []


@BOTH
def test_two_clients_creating_the_same_service_at_once_get_one_201_and_409s_as_does_every_taken_name(control_engine: ControlEngine) -> None:
    """The unique constraint, not a check before the write, decides: on PostgreSQL the loser's driver
    error must still be the API's 409, for services, environments and variables alike."""
    import concurrent.futures

    account = control_engine.account("team-a")
    for round_ in range(3):
        name = f"race{round_}"

        def create(_: int, name: str = name) -> int:
            with account.client() as c:
                return c.post("/Services", data={"UniqueName": name, "FriendlyName": "Race"}).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = sorted(pool.map(create, range(4)))
        assert statuses == [201, 409, 409, 409], (name, statuses)
    with account.client() as c:
        service = make_service(c)["sid"]
        environments = f"/Services/{service}/Environments"
        env = ok(c.post(environments, data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)["sid"]
        error(c.post(environments, data={"UniqueName": "dev", "DomainSuffix": "other"}), 409, "dev")
        error(c.post(environments, data={"UniqueName": "other", "DomainSuffix": "dev"}), 409, "domain")
        variables = f"{environments}/{env}/Variables"
        ok(c.post(variables, data={"Key": "A", "Value": "1"}), 201)
        b = ok(c.post(variables, data={"Key": "B", "Value": "2"}), 201)["sid"]
        error(c.post(variables, data={"Key": "A", "Value": "again"}), 409, "A")
        error(c.post(f"{variables}/{b}", data={"Key": "A"}), 409, "A")  # renamed onto a taken key: the constraint's 409
        assert sorted((v["key"], v["value"]) for v in ok(c.get(variables))["variables"]) == [("A", "1"), ("B", "2")]
