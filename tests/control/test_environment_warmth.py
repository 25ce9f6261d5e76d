"""`scale_to_zero_after_s` per deployed environment: `[environments."<domain name>"]` in the
operator's config file, for environments deployed through the real control API.

One build deployed to two environments of one service: `dev`'s domain has 3 s, the engine-wide
value and `[services.shop-dev]` say an hour. After a few seconds without a call `dev` has no idle
worker and `prod` still has its one (the operator's setting reaches exactly the environment it
names); `dev`'s next request is answered, as a cold start, and it is warm again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import steady
from tests.conftest import EngineLauncher
from tests.control.conftest import make_service, ok, start_control_engine, upload, wait_build
from tests.docker_helpers import log_records, wait_for

FAST_JS = "exports.handler = (context, event, callback) => callback(null, 'fast');\n"


@pytest.mark.docker
def test_scale_to_zero_after_s_is_per_deployed_environment_by_its_domain_name(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    config = {
        "min_idle": 1, "max_workers": 1, "scale_to_zero_after_s": 3600,
        "services": {"shop-dev": {"scale_to_zero_after_s": 3600}},  # the environment's own setting beats it
        "environments": {"shop-dev.localhost": {"scale_to_zero_after_s": 3}},
    }
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend, config=config)
    account = control.account("team")
    with account.client() as c:
        service = make_service(c, "shop")["sid"]
        fn = upload(c, service, "function", "/f", FAST_JS.encode(), "f.js")
        build = ok(c.post(f"/Services/{service}/Builds", data={
            "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": '"[]"'}), 201)
        assert wait_build(c, service, build["sid"])["status"] == "completed"
        hosts = {}
        for name in ("dev", "prod"):
            env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": name, "DomainSuffix": name}), 201)
            ok(c.post(f"/Services/{service}/Environments/{env['sid']}/Deployments", data={"BuildSid": build["sid"]}), 201)
            hosts[name] = env["domain_name"]
    assert hosts == {"dev": "shop-dev.localhost", "prod": "shop-prod.localhost"}
    engine = control.engine

    def call(name: str):
        with engine.client() as client:
            return client.get("/f", headers={"Host": f"{hosts[name]}:{engine.port}"})

    def idle(label: str) -> float:
        return steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_workers", service=label, state="idle")

    def cold(label: str) -> float:
        return steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_cold_starts_total", service=label)

    for name in ("dev", "prod"):
        reply = call(name)
        assert reply.status_code == 200 and reply.text == "fast", reply.text
    wait_for(lambda: idle("shop-dev") == 0, 30, "shop-dev scaled to zero after its 3 s")
    assert idle("shop-prod") == 1
    scaled = [r for r in log_records(engine) if r.get("event") == "pool_scaled_to_zero"]
    # dev may have gone to zero once already between its deployment and its first call: more than 3 s.
    assert scaled and {(r["pool"], r["scale_to_zero_after_s"]) for r in scaled} == {("shop-dev/node", 3)}, scaled
    before = cold("shop-dev")
    reply = call("dev")
    assert reply.status_code == 200 and reply.text == "fast", reply.text
    assert cold("shop-dev") == before + 1
    wait_for(lambda: idle("shop-dev") == 1, 30, "shop-dev warm again after its call")
    assert idle("shop-prod") == 1 and cold("shop-prod") == 0
