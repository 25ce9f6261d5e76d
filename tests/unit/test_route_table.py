"""The routing table alone: exact hostnames for deployed services, today's rules for folder ones,
and `publish` as one swap that requests already holding the old table do not see."""

from __future__ import annotations

from pathlib import Path

from engine.project import FunctionDef, Project
from engine.routing import Router, normalise_host
from engine.service import Service


def service(name: str, hostname: str | None = None) -> Service:
    fn = FunctionDef("f", "/f", "functions/f.py", "python", "public")
    project = Project(name, Path("/nonexistent") / name, {"/f": fn}, {}, {})
    return Service(name, project, "ZS" + "0" * 32, "ZE" + "0" * 32, {"/f": 10.0}, hostname=hostname)


def test_deployed_hostnames_are_exact_and_folder_services_keep_their_rules() -> None:
    alpha, beta = service("alpha"), service("beta")
    router = Router([alpha, beta], "localhost")
    shop = service("shop-dev", "shop-dev.localhost")
    router.publish({"shop-dev.localhost": shop})
    assert router.service_for("Shop-Dev.localhost:3000") is shop
    assert router.service_for("shop-dev.localhost.") is shop
    assert router.service_for("alpha.localhost") is alpha
    assert router.service_for("beta.localhost:3000") is beta
    assert router.service_for("other.localhost") is None
    assert router.service_for("127.0.0.1:3000") is None


def test_one_folder_service_still_answers_every_other_host() -> None:
    alpha = service("alpha")
    router = Router([alpha], "localhost")
    shop = service("shop-dev", "shop-dev.localhost")
    router.publish({"shop-dev.localhost": shop})
    assert router.service_for("shop-dev.localhost") is shop
    assert router.service_for("127.0.0.1:3000") is alpha


def test_beside_the_control_api_one_folder_service_answers_only_its_own_host() -> None:
    alpha = service("alpha")
    router = Router([alpha], "localhost", host_only=True)
    shop = service("shop-dev", "shop-dev.localhost")
    router.publish({"shop-dev.localhost": shop})
    assert router.service_for("alpha.localhost:3000") is alpha
    assert router.service_for("shop-dev.localhost") is shop
    assert router.service_for("127.0.0.1:3000") is None
    router.publish({})  # withdrawn: its host is nobody's, not the folder service's
    assert router.service_for("shop-dev.localhost") is None


def test_no_folder_service_serves_only_deployed_hostnames() -> None:
    router = Router([], "localhost")
    assert router.route("shop-dev.localhost", "/f") is None
    shop = service("shop-dev", "shop-dev.localhost")
    router.publish({"shop-dev.localhost": shop})
    route = router.route("shop-dev.localhost", "/f")
    assert route is not None and route.service is shop
    router.publish({})
    assert router.route("shop-dev.localhost", "/f") is None


def test_publish_swaps_a_new_table_and_leaves_a_held_one_unchanged() -> None:
    router = Router([], "localhost")
    old, new = service("shop-dev", "shop-dev.localhost"), service("shop-dev", "shop-dev.localhost")
    router.publish({"shop-dev.localhost": old})
    held = router.table
    router.publish({"shop-dev.localhost": new})
    assert held.service_for("shop-dev.localhost") is old
    assert router.service_for("shop-dev.localhost") is new
    assert router.table is not held


def test_normalise_host() -> None:
    assert normalise_host("A.Example:80") == "a.example"
    assert normalise_host("[::1]") == "[::1]"
