"""Every bound of the control API and every kind of bad input: a 4xx in the hosted error shape that
names the bound or the field, and nothing changed. Attack tests are named for the attack."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import EngineLauncher
from tests.postgres import create_database, drop_database
from tests.control.conftest import ControlEngine, error, make_service, ok, start_control_engine, upload, wait_build

BOUNDS = {
    "max_version_bytes": 4096, "max_build_bytes": 6000, "builds_per_hour": 3,
    "max_services_per_account": 3, "max_environments_per_service": 2,
}
JS = b"exports.handler = (c, e, cb) => cb(null, 'hi');\n"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bounded(request: pytest.FixtureRequest, module_engine_factory: EngineLauncher,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlEngine]:
    """One engine with small bounds for the whole module (each test uses its own account), on each
    store: PostgreSQL enforces column widths and types that SQLite lets through."""
    data = tmp_path_factory.mktemp("bounded") / "data"
    if request.param == "sqlite":
        yield start_control_engine(module_engine_factory, data, config=BOUNDS)
        return
    name, url = create_database("fe_bounds")
    try:
        control = start_control_engine(module_engine_factory, data, config=BOUNDS, database_url=url)
        yield control
        control.engine.stop()
    finally:
        drop_database(name)


def _versions(c: httpx.Client, service: str, segment: str, entry: str) -> list[Any]:
    return ok(c.get(f"/Services/{service}/{segment}/{entry}/Versions"))[
        "function_versions" if segment == "Functions" else "asset_versions"]


def test_upload_over_max_version_bytes_is_413_and_stores_nothing(bounded: ControlEngine) -> None:
    account = bounded.account("upload-bound")
    with account.client() as c:
        service = make_service(c)["sid"]
        fn = ok(c.post(f"/Services/{service}/Functions", data={"FriendlyName": "big"}), 201)["sid"]
        url = f"/Services/{service}/Functions/{fn}/Versions"
        just = b"/" * BOUNDS["max_version_bytes"]
        ok(c.post(url, data={"Path": "/ok", "Visibility": "public"}, files={"Content": ("ok.js", just)}), 201)
        over = b"/" * (BOUNDS["max_version_bytes"] + 1)
        error(c.post(url, data={"Path": "/big", "Visibility": "public"}, files={"Content": ("big.js", over)}), 413, "max_version_bytes")
        assert [v["path"] for v in _versions(c, service, "Functions", fn)] == ["/ok"]


def test_upload_streamed_without_length_cannot_get_past_max_version_bytes(bounded: ControlEngine) -> None:
    account = bounded.account("upload-stream")
    with account.client() as c:
        service = make_service(c)["sid"]
        fn = ok(c.post(f"/Services/{service}/Functions", data={"FriendlyName": "big"}), 201)["sid"]
        boundary = "engine-test-boundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"Path\"\r\n\r\n/big\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"Visibility\"\r\n\r\npublic\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"Content\"; filename=\"big.js\"\r\n"
                "Content-Type: application/javascript\r\n\r\n").encode()

        def body() -> Iterator[bytes]:
            yield head
            for _ in range(64):  # 4 MiB in all, far over the bound; chunked, no Content-Length
                yield b"/" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        response = c.post(f"/Services/{service}/Functions/{fn}/Versions", content=body(),
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        error(response, 413, "max_version_bytes")
        assert _versions(c, service, "Functions", fn) == []


def test_upload_with_many_parts_or_two_contents_is_refused(bounded: ControlEngine) -> None:
    account = bounded.account("upload-parts")
    with account.client() as c:
        service = make_service(c)["sid"]
        fn = ok(c.post(f"/Services/{service}/Functions", data={"FriendlyName": "x"}), 201)["sid"]
        url = f"/Services/{service}/Functions/{fn}/Versions"
        many = {f"F{i}": "x" for i in range(40)} | {"Path": "/x", "Visibility": "public"}
        error(c.post(url, data=many, files={"Content": ("x.js", JS)}), 400, "parts")
        error(c.post(url, data={"Path": "/x", "Visibility": "public"},
                     files=[("Content", ("x.js", JS)), ("Content", ("y.js", JS))]), 400, "two Content")
        error(c.post(url, data={"Path": "/x", "Visibility": "public"},
                     files={"Path": ("p", b"/" + b"a" * 5000)} | {"Content": ("x.js", JS)}), 400)
        assert _versions(c, service, "Functions", fn) == []


def test_build_over_max_build_bytes_is_413_and_makes_no_build(bounded: ControlEngine) -> None:
    account = bounded.account("build-bound")
    with account.client() as c:
        service = make_service(c)["sid"]
        one = upload(c, service, "function", "/a", b"/" * 4000, "a.js")
        two = upload(c, service, "function", "/b", b"/" * 4000, "b.js")
        error(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": [one["sid"], two["sid"]]}), 413, "max_build_bytes")
        assert ok(c.get(f"/Services/{service}/Builds"))["builds"] == []


def test_builds_over_builds_per_hour_get_429_and_other_accounts_are_not_held_back(bounded: ControlEngine) -> None:
    greedy, other = bounded.account("greedy"), bounded.account("patient")
    with greedy.client() as c:
        service = make_service(c)["sid"]
        fn = upload(c, service, "function", "/a", JS, "a.js")
        for _ in range(BOUNDS["builds_per_hour"]):
            wait_build(c, service, ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"]}), 201)["sid"])
        error(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"]}), 429, "builds_per_hour")
        assert len(ok(c.get(f"/Services/{service}/Builds"))["builds"]) == BOUNDS["builds_per_hour"]
    with other.client() as c:
        service = make_service(c)["sid"]
        ok(c.post(f"/Services/{service}/Builds", data={}), 201)


def test_services_and_environments_over_their_quota_get_429(bounded: ControlEngine) -> None:
    account = bounded.account("quota")
    with account.client() as c:
        for i in range(BOUNDS["max_services_per_account"]):
            make_service(c, f"s{i}")
        error(c.post("/Services", data={"UniqueName": "one-more", "FriendlyName": "x"}), 429, "max_services_per_account")
        for i in range(BOUNDS["max_environments_per_service"]):
            ok(c.post("/Services/s0/Environments", data={"UniqueName": f"e{i}", "DomainSuffix": f"e{i}"}), 201)
        error(c.post("/Services/s0/Environments", data={"UniqueName": "more", "DomainSuffix": "more"}), 429,
              "max_environments_per_service")
        assert len(ok(c.get("/Services"))["services"]) == BOUNDS["max_services_per_account"]


def test_a_domain_taken_by_another_account_is_409_without_revealing_its_owner(bounded: ControlEngine) -> None:
    """Domains are routed across every account, so the first to take one keeps it."""
    first, second = bounded.account("domain-first"), bounded.account("domain-second")
    with first.client() as c:
        ok(c.post(f"/Services/{make_service(c, 'taken')['sid']}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)
    with second.client() as c:
        service = make_service(c, "taken")["sid"]
        body = error(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 409, "taken-dev")
        assert first.sid not in body["message"]
        assert ok(c.get(f"/Services/{service}/Environments"))["environments"] == []


def test_per_account_quotas_from_accounts_create_and_update_override_the_engine_wide_ones(bounded: ControlEngine) -> None:
    big = bounded.account("quota-big", "--max-services", "4", "--max-version-bytes", "8192")
    small = bounded.account("quota-small", "--max-services", "1")
    with big.client() as c:
        for i in range(4):  # one more than the engine-wide max_services_per_account (3)
            make_service(c, f"big{i}")
        error(c.post("/Services", data={"UniqueName": "big4", "FriendlyName": "x"}), 429, "max_services_per_account")
        fn = ok(c.post("/Services/big0/Functions", data={"FriendlyName": "f"}), 201)["sid"]
        url = f"/Services/big0/Functions/{fn}/Versions"
        ok(c.post(url, data={"Path": "/f", "Visibility": "public"}, files={"Content": ("f.js", b"/" * 8192)}), 201)
        error(c.post(url, data={"Path": "/g", "Visibility": "public"}, files={"Content": ("g.js", b"/" * 8193)}), 413,
              "max_version_bytes")
    with small.client() as c:
        make_service(c, "small0")
        error(c.post("/Services", data={"UniqueName": "small1", "FriendlyName": "x"}), 429, "max_services_per_account")
        assert bounded.cli("accounts", "update", "quota-small", "--max-services", "2").returncode == 0
        make_service(c, "small1")
        assert bounded.cli("accounts", "update", "quota-small", "--max-services", "0").returncode == 0  # engine-wide: 3
        make_service(c, "small2")
        error(c.post("/Services", data={"UniqueName": "small3", "FriendlyName": "x"}), 429)
    bad = bounded.cli("accounts", "update", "quota-small", "--builds-per-hour", "-1")
    assert bad.returncode == 2 and "--builds-per-hour" in bad.stderr


def _state(c: httpx.Client) -> Any:
    services = ok(c.get("/Services"))["services"]
    out = []
    for s in services:
        base = f"/Services/{s['sid']}"
        envs = ok(c.get(f"{base}/Environments"))["environments"]
        out.append((s, envs, [ok(c.get(f"{base}/Environments/{e['sid']}/Variables"))["variables"] for e in envs],
                    ok(c.get(f"{base}/Functions"))["functions"], ok(c.get(f"{base}/Builds"))["builds"]))
    return out


def test_bad_input_of_every_kind_is_a_4xx_naming_the_problem_and_changes_nothing(bounded: ControlEngine) -> None:
    account = bounded.account("bad-input")
    with account.client() as c:
        service = make_service(c)["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)["sid"]
        ok(c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "A", "Value": "1"}), 201)
        fn = upload(c, service, "function", "/a", JS, "a.js")
        fn2 = upload(c, service, "function", "/a", JS, "a2.js")
        function_sid = fn["function_sid"]
        versions = f"/Services/{service}/Functions/{function_sid}/Versions"
        before = _state(c)
        cases: list[tuple[httpx.Response, int, list[str]]] = [
            (c.post("/Services", data={"FriendlyName": "x"}), 400, ["UniqueName"]),
            (c.post("/Services", data={"UniqueName": "Bad Name!", "FriendlyName": "x"}), 400, ["UniqueName"]),
            (c.post("/Services", data={"UniqueName": "x" * 60, "FriendlyName": "x"}), 400, ["UniqueName"]),
            (c.post("/Services", data={"UniqueName": "ok", "FriendlyName": "x", "IncludeCredentials": "maybe"}), 400, ["IncludeCredentials"]),
            (c.post("/Services", data={"UniqueName": "shop", "FriendlyName": "again"}), 409, ["shop"]),
            (c.post(f"/Services/{service}/Environments", data={"UniqueName": "x", "DomainSuffix": "Bad_Suffix"}), 400, ["DomainSuffix"]),
            (c.post(f"/Services/{service}/Environments", data={"UniqueName": "other", "DomainSuffix": "dev"}), 409, ["domain"]),
            (c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev2"}), 409, ["dev"]),
            (c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "1BAD", "Value": "x"}), 400, ["Key"]),
            (c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "B"}), 400, ["Value"]),
            (c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "B", "Value": "v" * 451}), 400, ["Value"]),
            (c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "A", "Value": "dup"}), 409, ["A"]),
            (c.post(versions, data={"Path": "/x", "Visibility": "secret"}, files={"Content": ("x.js", JS)}), 400, ["Visibility"]),
            (c.post(versions, data={"Path": "/../../etc/passwd", "Visibility": "public"}, files={"Content": ("x.js", JS)}), 400, ["Path"]),
            (c.post(versions, data={"Path": "/a/./b", "Visibility": "public"}, files={"Content": ("x.js", JS)}), 400, ["Path"]),
            (c.post(versions, data={"Path": "no-slash", "Visibility": "public"}, files={"Content": ("x.js", JS)}), 400, ["Path"]),
            (c.post(versions, data={"Path": "/a b", "Visibility": "public"}, files={"Content": ("x.js", JS)}), 400, ["Path"]),
            (c.post(versions, data={"Path": "/.env", "Visibility": "public"}, files={"Content": ("x.js", JS)}), 400, ["Path"]),
            (c.post(versions, data={"Path": "/x", "Visibility": "public"}, files={"Other": ("x.js", JS)}), 400, ["Content"]),
            (c.post(versions, data={"Path": "/x", "Visibility": "public"}), 400, ["multipart"]),
            (c.post(versions, data={"Path": "/x", "Visibility": "public"}, files={"Content": ("x.js", b"\xff\xfe")}), 400, ["UTF-8"]),
            (c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"], "Runtime": "node8"}), 400, ["Runtime", "node22"]),
            (c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"], "Dependencies": "{not json"}), 400, ["Dependencies"]),
            (c.post(f"/Services/{service}/Builds", data={"Dependencies": '[{"name":"../evil","version":"1"}]'}), 400, ["../evil"]),
            (c.post(f"/Services/{service}/Builds", data={"Dependencies": '{"a": 1}'}), 400, ["Dependencies"]),
            (c.post(f"/Services/{service}/Builds", data={"FunctionVersions": [fn["sid"], fn2["sid"]]}), 400, ["/a"]),
            (c.post(f"/Services/{service}/Builds", data={"FunctionVersions": [fn["sid"], fn["sid"]]}), 400, ["twice"]),
            (c.post(f"/Services/{service}/Builds", data={"FunctionVersions": "ZN" + "0" * 32}), 400, ["ZN" + "0" * 32]),
            (c.post(f"/Services/{service}/Environments/{env}/Deployments", data={}), 400, ["BuildSid"]),
            (c.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": "ZB" + "0" * 32}), 400, ["BuildSid"]),
            (c.get("/Services", params={"PageSize": "0"}), 400, ["PageSize"]),
            (c.get("/Services", params={"PageSize": "1001"}), 400, ["PageSize"]),
            (c.get("/Services", params={"Page": "abc"}), 400, ["Page"]),
            (c.get("/Services", params={"PageToken": "PA123"}), 400, ["PageToken"]),
            (c.get(f"/Services/{service}/Environments/{env}/Logs", params={"StartDate": "yesterday"}), 400, ["StartDate"]),
            (c.delete(f"/Services/{service}/Functions/{function_sid}/Versions/{fn['sid']}"), 405, ["DELETE"]),
            (c.get("/Services/ZS" + "0" * 32), 404, ["ZS"]),
            (c.get("/NoSuchThing"), 404, []),
        ]
        for response, status, words in cases:
            error(response, status, *words)
        assert _state(c) == before


def test_a_failed_build_cannot_be_deployed(bounded: ControlEngine) -> None:
    account = bounded.account("failed-deploy")
    with account.client() as c:
        service = make_service(c, "failing")["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)["sid"]
        fn = upload(c, service, "function", "/a", JS, "a.js")
        deps = '[{"name":"leftpad","version":"git+https://example.invalid/x.git"}]'
        build = ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"], "Dependencies": deps}), 201)["sid"]
        assert wait_build(c, service, build)["status"] == "failed"
        error(c.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": build}), 400, "failed", build)
        assert ok(c.get(f"/Services/{service}/Environments/{env}/Deployments"))["deployments"] == []
        assert ok(c.get(f"/Services/{service}/Environments/{env}"))["build_sid"] is None


