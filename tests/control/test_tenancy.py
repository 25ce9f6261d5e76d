"""Two accounts on one engine: every resource of one is a 404 to the other, lists are their own."""

from __future__ import annotations

from typing import Any

import httpx

from tests.control.conftest import ControlEngine, error, make_service, ok, upload, wait_build


def _make_everything(c: httpx.Client) -> dict[str, Any]:
    """One resource of each kind, returned as the URLs (relative to /v1) that reach them."""
    service = make_service(c, "shop")["sid"]
    env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)["sid"]
    var = ok(c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "SECRET", "Value": "s3cret"}), 201)["sid"]
    fn = upload(c, service, "function", "/hello", b"exports.handler = (c, e, cb) => cb(null, 'hi');\n", "hello.js")
    asset = upload(c, service, "asset", "/a.txt", b"asset bytes", "a.txt", content_type="text/plain")
    build = ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"], "AssetVersions": asset["sid"]}), 201)["sid"]
    wait_build(c, service, build)
    s = f"/Services/{service}"
    return {
        "service": service, "env": env, "fn_version": fn["sid"], "asset_version": asset["sid"],
        "fetch": [
            s, f"{s}/Environments/{env}", f"{s}/Environments/{env}/Variables/{var}",
            f"{s}/Functions/{fn['function_sid']}", f"{s}/Functions/{fn['function_sid']}/Versions/{fn['sid']}",
            f"{s}/Functions/{fn['function_sid']}/Versions/{fn['sid']}/Content",
            f"{s}/Assets/{asset['asset_sid']}", f"{s}/Assets/{asset['asset_sid']}/Versions/{asset['sid']}",
            f"{s}/Builds/{build}", f"{s}/Builds/{build}/Status",
        ],
        "lists": [
            f"{s}/Environments", f"{s}/Environments/{env}/Variables", f"{s}/Environments/{env}/Deployments",
            f"{s}/Environments/{env}/Logs", f"{s}/Functions", f"{s}/Functions/{fn['function_sid']}/Versions",
            f"{s}/Assets", f"{s}/Assets/{asset['asset_sid']}/Versions", f"{s}/Builds",
        ],
        "updates": [
            (s, {"FriendlyName": "taken over"}),
            (f"{s}/Environments/{env}/Variables/{var}", {"Value": "leaked"}),
            (f"{s}/Functions/{fn['function_sid']}", {"FriendlyName": "taken over"}),
            (f"{s}/Assets/{asset['asset_sid']}", {"FriendlyName": "taken over"}),
            (f"{s}/Environments", {"UniqueName": "intruder"}),
            (f"{s}/Environments/{env}/Variables", {"Key": "INTRUDER", "Value": "x"}),
            (f"{s}/Functions", {"FriendlyName": "intruder"}),
            (f"{s}/Builds", {"FunctionVersions": fn["sid"]}),
            (f"{s}/Environments/{env}/Deployments", {"BuildSid": build}),
        ],
        "deletes": [
            f"{s}/Environments/{env}/Variables/{var}", f"{s}/Functions/{fn['function_sid']}",
            f"{s}/Assets/{asset['asset_sid']}", f"{s}/Builds/{build}", f"{s}/Environments/{env}", s,
        ],
    }


def _snapshot(c: httpx.Client, made: dict[str, Any]) -> list[Any]:
    return [ok(c.get(url)) for url in made["fetch"] + made["lists"]]


def test_another_account_gets_404_for_every_resource_kind_and_changes_nothing(control_engine: ControlEngine) -> None:
    a, b = control_engine.account("team-a"), control_engine.account("team-b")
    with a.client() as ca, b.client() as cb:
        made = _make_everything(ca)
        before = _snapshot(ca, made)
        for url in made["fetch"] + made["lists"]:
            error(cb.get(url), 404)
        for url, data in made["updates"]:
            error(cb.post(url, data=data), 404)
        upload_url = made["fetch"][3] + "/Versions"
        error(cb.post(upload_url, data={"Path": "/x", "Visibility": "public"}, files={"Content": ("x.js", b"x")}), 404)
        for url in made["deletes"]:
            error(cb.delete(url), 404)
        # The unique name resolves only within the caller's account.
        error(cb.get("/Services/shop"), 404)
        assert _snapshot(ca, made) == before


def test_lists_show_only_the_callers_own_resources(control_engine: ControlEngine) -> None:
    a, b = control_engine.account("team-a"), control_engine.account("team-b")
    with a.client() as ca, b.client() as cb:
        make_service(ca, "alpha")
        make_service(cb, "beta")
        assert [s["unique_name"] for s in ok(ca.get("/Services"))["services"]] == ["alpha"]
        assert [s["unique_name"] for s in ok(cb.get("/Services"))["services"]] == ["beta"]


def test_a_build_cannot_take_another_accounts_versions(control_engine: ControlEngine) -> None:
    a, b = control_engine.account("team-a"), control_engine.account("team-b")
    with a.client() as ca, b.client() as cb:
        theirs = upload(ca, make_service(ca, "alpha")["sid"], "function", "/secret", b"exports.handler=()=>{}", "secret.js")
        mine = make_service(cb, "beta")["sid"]
        error(cb.post(f"/Services/{mine}/Builds", data={"FunctionVersions": theirs["sid"]}), 400, theirs["sid"])
        assert ok(cb.get(f"/Services/{mine}/Builds"))["builds"] == []


def test_a_build_cannot_take_a_version_of_another_service(control_engine: ControlEngine) -> None:
    a = control_engine.account("team-a")
    with a.client() as c:
        other = upload(c, make_service(c, "alpha")["sid"], "function", "/x", b"exports.handler=()=>{}", "x.js")
        mine = make_service(c, "beta")["sid"]
        error(c.post(f"/Services/{mine}/Builds", data={"FunctionVersions": other["sid"]}), 400, other["sid"], "not a version")
        # An asset version named as a function version is refused as well.
        asset = upload(c, mine, "asset", "/y.txt", b"y", "y.txt", content_type="text/plain")
        error(c.post(f"/Services/{mine}/Builds", data={"FunctionVersions": asset["sid"]}), 400, asset["sid"])
        assert ok(c.get(f"/Services/{mine}/Builds"))["builds"] == []


