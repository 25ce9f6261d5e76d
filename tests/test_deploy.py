"""Operations artefacts: the Kubernetes manifests, the Grafana dashboard, the metrics doc and the
engine's own image (deploy/, docs/metrics.md, Dockerfile).

Manifests are validated offline against the Kubernetes JSON schemas that `kubernetes-validate`
bundles, in strict mode (unknown fields are errors). The Prometheus Operator's CRDs
(ServiceMonitor, PrometheusRule) are not in those schemas, so they are checked structurally here,
and every PromQL expression (alerts and dashboard) is parsed with `promql-parser` and may name
only series the engine exports.
"""

from __future__ import annotations

import http.server
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import promql_parser
import pytest
import yaml

from engine.config import Settings, load_settings, read_config_file
import engine.control.metrics  # noqa: F401  (the control plane's families: builds, deployments, store_up)
from engine.metrics import REGISTRY

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "k8s"
DASHBOARD = REPO / "deploy" / "grafana" / "functions-engine.json"
METRICS_DOC = REPO / "docs" / "metrics.md"
OPERATING_DOC = REPO / "docs" / "operating.md"

# The oldest Kubernetes the manifests claim to support, and the newest schemas bundled.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD_GROUP = "monitoring.coreos.com/v1"
# Series an alert may use besides the engine's own: Prometheus's scrape health.
PROMETHEUS_SERIES = {"up"}
# Grafana's variables, replaced by a representative value before parsing.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


# --- helpers -----------------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@lru_cache(maxsize=None)
def all_resources() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((path.name, doc) for path in MANIFEST_FILES for doc in load_docs(path))


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for _, doc in all_resources() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind}{f' {name}' if name else ''} in deploy/k8s, found {len(found)}"
    return found[0]


def engine_container() -> dict[str, Any]:
    containers = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "engine")


def config_toml() -> str:
    return resource("ConfigMap", "functions-engine-config")["data"]["engine.toml"]


@lru_cache(maxsize=None)
def exported_series() -> frozenset[str]:
    """Every series name the engine can export, from the metric families in engine/metrics.py."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        assert family.type in suffixes, f"metric family {family.name} has an unexpected type {family.type}"
        names.update(family.name + suffix for suffix in suffixes[family.type])
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def selected_series(expr: str) -> list[str]:
    """The metric names an expression selects; a selector without one (`{__name__=~...}`) is an error."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    try:
        ast = promql_parser.parse(expr)
    except ValueError as exc:
        raise AssertionError(f"not valid PromQL ({exc}): {expr}") from None
    names: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr}"
            names.append(node.name)

    promql_parser.walk(ast, visit)
    return names


def dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


# --- manifests against the Kubernetes schemas -----------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schema(path: Path, version: str) -> None:
    """Every core resource passes the strict JSON schema of the oldest and newest supported Kubernetes."""
    docs = load_docs(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path.name}: a document lacks apiVersion/kind/metadata"
        if doc["apiVersion"] == CRD_GROUP:
            continue  # Prometheus Operator CRDs: not in the core schemas, see test_*_structure below
        problem = None
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path) or "(top level)"
            problem = f"{path.name}: {doc['kind']}/{doc['metadata'].get('name')} against {version}: {where}: {exc.message}"
        if problem:
            pytest.fail(problem)  # outside `except`: the schema dump of the chained exception is noise


def test_kustomization_lists_exactly_the_manifest_files() -> None:
    """kustomization.yaml names every manifest in deploy/k8s and nothing that is not there."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), f"a resource is listed twice: {listed}"
    assert set(listed) == {p.name for p in MANIFEST_FILES}


def test_every_namespaced_resource_lives_in_the_engine_namespace() -> None:
    """The namespace manifest and kustomization agree, and no manifest pins another namespace."""
    namespace = resource("Namespace")["metadata"]["name"]
    assert yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"] == namespace
    for filename, doc in all_resources():
        assert doc["metadata"].get("namespace") in (None, namespace), f"{filename} pins another namespace"


# --- the config file ------------------------------------------------------------------------------


def test_configmap_config_file_is_valid_engine_settings(tmp_path: Path) -> None:
    """The ConfigMap's engine.toml parses and validates as Settings: docker backend under runsc."""
    path = tmp_path / "engine.toml"
    path.write_text(config_toml(), encoding="utf-8")
    assert read_config_file(path)
    settings = load_settings({"config": str(path)}, environ={})
    assert (settings.backend, settings.runtime) == ("docker", "runsc")
    assert (settings.host, settings.port, settings.admin_port) == ("0.0.0.0", 3000, 3001)
    assert settings.api_port == 3002 and settings.api_port not in (settings.port, settings.admin_port)
    assert not settings.dev_mode and settings.log_format == "json"
    for project in settings.projects:
        assert project.partition("=")[2].startswith("/srv/project"), "projects must live where the image puts them"


def test_operating_doc_example_names_every_setting_and_loads(tmp_path: Path) -> None:
    """docs/operating.md's example config file holds every setting and is valid as it stands."""
    blocks = re.findall(r"```toml\n(.*?)```", OPERATING_DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/operating.md should have exactly one ```toml example"
    path = tmp_path / "engine.toml"
    path.write_text(blocks[0], encoding="utf-8")
    documented = set(read_config_file(path))
    missing = set(Settings.model_fields) - {"config"} - documented
    assert not missing, f"docs/operating.md's example lacks {sorted(missing)}"
    settings = load_settings({"config": str(path)}, environ={})
    assert settings.services["shop"].functions["/slow-report"].time_limit_s == 30.0


def test_deployment_passes_the_configmap_as_config_file() -> None:
    container = engine_container()
    args = container["args"]
    assert args[0] == "serve" and args[args.index("--config") + 1] == "/etc/functions-engine/engine.toml"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in resource("Deployment")["spec"]["template"]["spec"]["volumes"]}
    config_volume = next(v for v in volumes.values() if "configMap" in v)
    assert config_volume["configMap"]["name"] == "functions-engine-config"
    assert mounts[config_volume["name"]]["mountPath"] == "/etc/functions-engine"


def test_secret_holds_the_project_dotenv_mounted_into_the_project() -> None:
    """The Secret's `.env` key becomes /srv/project/.env (never part of an image)."""
    secret = resource("Secret", "functions-engine-env")
    assert ".env" in secret["stringData"]
    for line in secret["stringData"][".env"].splitlines():
        assert not line.strip() or line.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line), line
    volumes = {v["name"]: v for v in resource("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in engine_container()["volumeMounts"] if m["mountPath"] == "/srv/project/.env")
    assert mount["subPath"] == ".env" and mount.get("readOnly") is True
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]


# --- the engine pod -------------------------------------------------------------------------------


def test_engine_container_security_context_is_restricted() -> None:
    """runAsNonRoot, read-only root, no capabilities, RuntimeDefault seccomp, no privilege escalation."""
    pod = resource("Deployment")["spec"]["template"]["spec"]
    ctx = engine_container()["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False and ctx.get("privileged", False) is False
    assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add")
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    tmp = next(m for m in engine_container()["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


def test_engine_reaches_only_its_node_docker_socket_and_channel_directory() -> None:
    """Two hostPaths only: the engine-only daemon's socket directory (DOCKER_HOST points into it) and
    the worker channel directory, mounted at the host's own path so the daemon can bind-mount the
    per-worker directories the engine makes there (ENGINE_CHANNEL_ROOT)."""
    pod = resource("Deployment")["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert set(host_paths) == {"docker", "channels"}, host_paths
    assert all(h["type"] == "Directory" for h in host_paths.values())
    socket_dir = host_paths["docker"]["path"]
    env = {e["name"]: e.get("value") for e in engine_container()["env"]}
    assert env["DOCKER_HOST"] == f"unix://{socket_dir}/docker.sock"
    mounts = {m["name"]: m for m in engine_container()["volumeMounts"]}
    channel_dir = host_paths["channels"]["path"]
    assert mounts["channels"]["mountPath"] == channel_dir == env["ENGINE_CHANNEL_ROOT"]
    assert channel_dir != socket_dir and not channel_dir.startswith(socket_dir + "/")
    assert pod["nodeSelector"] and pod["tolerations"], "the engine runs on the dedicated node pool only"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname", "one engine per node: each needs its own daemon"
    # The engine reaps orphans only of its own host name: every engine pod gets the same one, so
    # a new engine on a node removes the containers a killed one left on that node's daemon.
    assert pod["hostname"]


def test_probes_use_the_admin_port() -> None:
    """Liveness on /healthz, readiness on /readyz, both on the admin port (3001), never the control API's."""
    container = engine_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000, "admin": 3001, "control": 3002}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and ports.get(get["port"], get["port"]) == 3001, probe


def test_termination_grace_outlasts_the_longest_time_limit() -> None:
    """SIGTERM drains in-flight invocations (longest limit + 2 s) after the preStop pause."""
    data = tomllib.loads(config_toml())
    limits = [data.get("time_limit_s", 10.0)] + [
        fn["time_limit_s"]
        for service in data.get("services", {}).values()
        for fn in service.get("functions", {}).values()
        if "time_limit_s" in fn
    ]
    pre_stop = engine_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > max(limits) + 2 + float(pre_stop[1]) + 5, "leave at least 5 s for removing the workers"


def test_service_hpa_and_pdb_point_at_the_engine() -> None:
    deployment = resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = resource("Service", "functions-engine")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (3000, "http"), "admin": (3001, "admin"),
    }
    hpa = resource("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    pdb = resource("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


# --- several replicas on one PostgreSQL store -------------------------------------------------------

DATABASE_SECRET = "functions-engine-database"


def job() -> dict[str, Any]:
    return resource("Job", "functions-engine-db-upgrade")


def job_container() -> dict[str, Any]:
    (container,) = job()["spec"]["template"]["spec"]["containers"]
    return container


def database_url_env(container: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [e for e in container.get("env", []) if e["name"] == "ENGINE_DATABASE_URL"]
    return entry


def test_engine_reads_the_database_url_from_the_secret_only() -> None:
    """ENGINE_DATABASE_URL comes from a secretKeyRef (required, so a pod without it does not start);
    the ConfigMap names neither a database URL nor a data_dir that would open a private SQLite store."""
    entry = database_url_env(engine_container())
    assert "value" not in entry, "the database URL (with its password) must not be written into the Deployment"
    ref = entry["valueFrom"]["secretKeyRef"]
    assert ref["name"] == DATABASE_SECRET and not ref.get("optional", False)
    secret = resource("Secret", DATABASE_SECRET)
    url = secret["stringData"][ref["key"]]
    assert "PLACEHOLDER" in (K8S / "database-secret.yaml").read_text(encoding="utf-8"), "say it must be replaced"
    # The placeholder has the working form: a plain postgresql:// URL (the engine adds the asyncpg
    # driver) that asks asyncpg for TLS.
    from sqlalchemy.engine import make_url

    from engine.control.store import database_url

    assert url.startswith("postgresql://")
    normalised = make_url(database_url(None, url))
    assert normalised.drivername == "postgresql+asyncpg"
    assert normalised.query.get("ssl") in ("require", "verify-ca", "verify-full"), "the example must ask for TLS"
    data = tomllib.loads(config_toml())
    assert "database_url" not in data and "data_dir" not in data
    assert not any(e["name"] in ("ENGINE_DATA_DIR", "ENGINE_DATABASE_URL") and "value" in e
                   for e in engine_container()["env"])


def test_several_replicas_and_the_hpa_and_pdb_agree() -> None:
    """At least two replicas from the start and under the HPA; the PDB lets a drain take one, never all."""
    deployment = resource("Deployment")
    hpa = resource("HorizontalPodAutoscaler")["spec"]
    pdb = resource("PodDisruptionBudget")["spec"]
    assert deployment["spec"]["replicas"] >= 2
    assert 2 <= hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    assert "minAvailable" not in pdb
    assert isinstance(pdb["maxUnavailable"], int) and 1 <= pdb["maxUnavailable"] < hpa["minReplicas"]
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] <= pdb["maxUnavailable"], "a rollout takes no more pods at once than a drain"


def test_control_api_has_its_own_service_on_the_api_port() -> None:
    """api_port in engine.toml is the container port `control`, served by Service
    functions-engine-control alone; the function traffic Service does not carry it."""
    api_port = tomllib.loads(config_toml())["api_port"]
    ports = {p["name"]: p["containerPort"] for p in engine_container()["ports"]}
    assert ports["control"] == api_port and api_port not in (ports["http"], ports["admin"])
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    control = resource("Service", "functions-engine-control")
    assert control["spec"]["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in control["spec"]["ports"]] == [(api_port, "control")]
    functions = resource("Service", "functions-engine")
    assert not any(p["targetPort"] in ("control", api_port) or p["port"] == api_port for p in functions["spec"]["ports"])


def test_migration_job_runs_db_upgrade_with_the_engine_image_and_secret() -> None:
    """The Job is `python -m engine db upgrade` from the Deployment's image, with the same secretKeyRef,
    bounded retries, removed after it ends, restricted like the engine, and no Docker socket."""
    spec = job()["spec"]
    pod = spec["template"]["spec"]
    container = job_container()
    assert container["args"] == ["db", "upgrade"] and "command" not in container  # the image's `python3 -m engine`
    assert container["image"] == engine_container()["image"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert container["image"] in {image["name"] for image in kustomization["images"]}, "kustomize must set its tag too"
    assert database_url_env(container) == database_url_env(engine_container())
    assert 1 <= spec["backoffLimit"] <= 10 and spec["ttlSecondsAfterFinished"] > 0
    assert spec.get("activeDeadlineSeconds", 0) > 0
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert container["securityContext"] == engine_container()["securityContext"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert not any("hostPath" in v for v in pod.get("volumes", [])), "the Job needs no node path, least of all the socket"
    assert not any(e["name"] == "DOCKER_HOST" for e in container.get("env", []))
    assert "limits" in container["resources"]


def test_migration_job_command_is_the_engines() -> None:
    """`python -m engine <the Job's args> --help` is a command the engine knows."""
    done = subprocess.run([sys.executable, "-m", "engine", *job_container()["args"], "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and "--database-url" in done.stdout, done.stderr


def test_migration_job_command_migrates_a_real_database_twice(pg_url: str) -> None:
    """The Job's exact arguments and environment variable migrate an empty PostgreSQL database, and a
    second run (a retried Job, or the next release's) finds nothing to do and succeeds."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")},
           database_url_env(job_container())["name"]: pg_url}
    for attempt in (1, 2):
        done = subprocess.run([sys.executable, "-m", "engine", *job_container()["args"]],
                              capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert done.returncode == 0, f"run {attempt}: {done.stdout}{done.stderr}"
        assert "newest schema" in done.stdout


FIRST_APPLY = ("database", "db-upgrade")  # README.md: `kubectl apply -k deploy/k8s -l 'app.kubernetes.io/component in (...)'`


def readme_section(title: str) -> str:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    assert f"\n## {title}\n" in readme, f"deploy/k8s/README.md has no section {title!r}"
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_cloudnativepg_example_is_the_database_the_manifests_name() -> None:
    """The README's CloudNativePG example (not applied: its CRDs are not in the offline schemas)
    parses, and its cluster is the one the NetworkPolicy admits and the placeholder URL names."""
    blocks = re.findall(r"```yaml\n(.*?)```", readme_section("PostgreSQL"), re.S)
    docs = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    (cluster,) = [d for d in docs if d["kind"] == "Cluster"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    assert all(d["metadata"]["namespace"] == namespace for d in docs)
    assert any(d["kind"] == "ScheduledBackup" and d["spec"]["cluster"]["name"] == name for d in docs), "a backup schedule"
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    (engine_policy,) = policies_selecting(labels)
    (peer,) = map(json.loads, database_egress(engine_policy["spec"]))
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
    assert peer["podSelector"]["matchLabels"] == {"cnpg.io/cluster": name}
    from sqlalchemy.engine import make_url

    url = make_url(resource("Secret", DATABASE_SECRET)["stringData"]["url"])
    assert url.host == f"{name}-rw.{namespace}.svc" and url.port == 5432
    assert int(cluster["spec"]["postgresql"]["parameters"]["max_connections"]) >= \
        resource("HorizontalPodAutoscaler")["spec"]["maxReplicas"] * 16 + 2, "README, Size: connections per replica"


def test_applying_the_migration_first_brings_what_the_job_needs_and_no_engine() -> None:
    """The label selection the README applies before the rest holds the Job, the Secret it reads and
    its NetworkPolicy, and nothing that starts or routes to an engine; the Job names no ServiceAccount
    of ours (the namespace's default one exists on a first install)."""
    chosen = {(doc["kind"], doc["metadata"]["name"]) for _, doc in all_resources()
              if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") in FIRST_APPLY}
    job_labels = job()["spec"]["template"]["metadata"]["labels"]
    (policy,) = policies_selecting(job_labels)
    assert chosen == {("Job", job()["metadata"]["name"]), ("Secret", DATABASE_SECRET),
                      ("NetworkPolicy", policy["metadata"]["name"])}, chosen
    assert "serviceAccountName" not in job()["spec"]["template"]["spec"]
    readme = readme_section("PostgreSQL")
    selector = f"-l 'app.kubernetes.io/component in ({','.join(FIRST_APPLY)})'"
    assert selector in readme and selector in (K8S / "migrate-job.yaml").read_text(encoding="utf-8")
    assert "--for=condition=complete" in readme and f"job/{job()['metadata']['name']}" in readme


def test_migration_job_pods_are_apart_from_the_engine() -> None:
    """No Service, PDB or the engine's NetworkPolicy selects the Job's pod (it would get traffic or
    the engine's ingress); a policy of its own lets it reach the same database, and nothing in."""
    labels = job()["spec"]["template"]["metadata"]["labels"]
    for _, doc in all_resources():
        selector = doc.get("spec", {}).get("selector")
        if doc["kind"] in ("Service", "PodDisruptionBudget", "Deployment") and selector:
            selector = selector.get("matchLabels", selector)
            assert not selector.items() <= labels.items(), f"{doc['kind']}/{doc['metadata']['name']} selects the Job"
    (policy,) = policies_selecting(labels)
    assert not policy["spec"].get("ingress") and "Ingress" in policy["spec"]["policyTypes"]
    engine_labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    (engine_policy,) = policies_selecting(engine_labels)
    assert policy is not engine_policy
    assert database_egress(policy["spec"]) == database_egress(engine_policy["spec"])
    assert _peers_and_ports(policy["spec"]["egress"], "to") == _peers_and_ports(engine_policy["spec"]["egress"], "to")


def _peers_and_ports(rules: list[dict[str, Any]], side: str) -> set[tuple[str, int, str]]:
    """(peer as canonical JSON, port, protocol) for each rule's peers × ports; a rule without peers or
    ports would admit every peer or every port, so it is refused here."""
    found = set()
    for rule in rules:
        assert rule.get(side) and rule.get("ports"), f"a NetworkPolicy rule without `{side}` or `ports` admits everything: {rule}"
        for peer in rule[side]:
            for port in rule["ports"]:
                found.add((json.dumps(peer, sort_keys=True), port["port"], port.get("protocol", "TCP")))
    return found


def _peer(namespace: dict[str, str], pods: dict[str, str] | None = None) -> str:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": namespace}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": pods}
    return json.dumps(peer, sort_keys=True)


def policies_selecting(labels: dict[str, str]) -> list[dict[str, Any]]:
    """The NetworkPolicies (other than the default deny) whose podSelector matches pods with these labels."""
    return [doc for _, doc in all_resources() if doc["kind"] == "NetworkPolicy" and doc["spec"]["podSelector"]
            and doc["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]


DEPLOYER_LABEL = {"functions-engine.io/deployer": "true"}
DNS_PEER = _peer({"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"})


def database_egress(spec: dict[str, Any]) -> set[str]:
    """The peers a policy lets reach port 5432; each must name the database, not a whole namespace."""
    peers = {peer for peer, port, protocol in _peers_and_ports(spec["egress"], "to") if (port, protocol) == (5432, "TCP")}
    for peer in map(json.loads, peers):
        narrow = peer.get("podSelector", {}).get("matchLabels") or "ipBlock" in peer
        assert narrow, f"egress to 5432 must name the database's pods or address, not a whole namespace: {peer}"
    return peers


def test_network_policy_denies_by_default_and_admits_only_what_the_engine_needs() -> None:
    """Default deny; 3000 from the ingress namespace, 3001 from monitoring, the control API (3002)
    only from deployer pods in deployer namespaces; egress only to the cluster DNS and to the
    PostgreSQL store on 5432."""
    policies = [doc for _, doc in all_resources() if doc["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny[0]["spec"].get("ingress") and not deny[0]["spec"].get("egress")
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    engine = policies_selecting(labels)
    assert len(engine) == 1
    spec = engine[0]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert _peers_and_ports(spec["ingress"], "from") == {
        (_peer({"kubernetes.io/metadata.name": "ingress-nginx"}), 3000, "TCP"),
        (_peer({"kubernetes.io/metadata.name": "monitoring"}), 3001, "TCP"),
        # Both selectors in one peer: a deployer pod AND in a deployer namespace.
        (_peer(DEPLOYER_LABEL, DEPLOYER_LABEL), 3002, "TCP"),
    }
    db = database_egress(spec)
    assert len(db) == 1
    assert _peers_and_ports(spec["egress"], "to") == {
        (DNS_PEER, 53, "UDP"), (DNS_PEER, 53, "TCP"), (next(iter(db)), 5432, "TCP"),
    }


def test_control_api_port_admits_no_one_but_the_deployers() -> None:
    """An attacker in the ingress or monitoring namespace (or any unlabelled pod) cannot reach 3002:
    no rule admitting another peer names the control API's port, or leaves its ports open."""
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    (spec,) = [p["spec"] for p in policies_selecting(labels)]
    api_port = tomllib.loads(config_toml())["api_port"]
    for peer, port, _ in _peers_and_ports(spec["ingress"], "from"):
        if port in (api_port, "control"):
            assert peer == _peer(DEPLOYER_LABEL, DEPLOYER_LABEL), f"{peer} may reach the control API"
    # The deployer rule opens the API port only, not the function or admin port.
    assert {port for peer, port, _ in _peers_and_ports(spec["ingress"], "from")
            if peer == _peer(DEPLOYER_LABEL, DEPLOYER_LABEL)} == {api_port}


# --- Prometheus Operator CRDs (structural: not in the core schemas) ---------------------------------


def test_servicemonitor_structure() -> None:
    """apiVersion/kind/metadata/spec present; scrapes /metrics on the Service's admin port."""
    monitor = resource("ServiceMonitor")
    assert monitor["apiVersion"] == CRD_GROUP and monitor["metadata"]["name"]
    spec = monitor["spec"]
    service = resource("Service", "functions-engine")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [resource("Namespace")["metadata"]["name"]]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    # Only the Service with the admin port: a selected Service without it would be scraped for nothing.
    selected = [doc for _, doc in all_resources() if doc["kind"] == "Service"
                and spec["selector"]["matchLabels"].items() <= doc["metadata"]["labels"].items()]
    assert selected == [service], [doc["metadata"]["name"] for doc in selected]
    assert spec["endpoints"], "a ServiceMonitor needs at least one endpoint"
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] == "admin" and endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"


def test_prometheusrule_structure_and_alerts() -> None:
    """Every rule has an alert name, a PromQL expr over exported series, a severity and a summary."""
    rule = resource("PrometheusRule")
    assert rule["apiVersion"] == CRD_GROUP and rule["metadata"]["name"]
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    alerts = {}
    for group in groups:
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}, r
            assert r.get("alert") and isinstance(r["expr"], str) and r["expr"].strip(), r
            assert re.fullmatch(r"\d+[smh]", r.get("for", "0s")), r["alert"]
            assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
            assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
            unknown = set(selected_series(r["expr"])) - exported_series() - PROMETHEUS_SERIES
            assert not unknown, f"{r['alert']} uses series the engine does not export: {sorted(unknown)}"
            alerts[r["alert"]] = r["expr"]
    assert len(alerts) == sum(len(g["rules"]) for g in groups), "alert names must be unique"
    # The four: error ratio, timeouts, pool exhaustion (503/queue rejections), cold starts.
    assert "functions_engine_invocations_total" in alerts["FunctionsEngineErrorRatioHigh"]
    assert 'status="504"' in alerts["FunctionsEngineTimeouts"]
    assert "functions_engine_queue_rejections_total" in alerts["FunctionsEnginePoolExhausted"]
    assert "functions_engine_cold_starts_total" in alerts["FunctionsEngineColdStartRatioHigh"]
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    for name in alerts:
        assert f"### {name}" in readme, f"deploy/k8s/README.md does not explain {name}"


# --- dashboard and metrics doc --------------------------------------------------------------------


def test_dashboard_queries_name_only_exported_series() -> None:
    """Every `expr` (and the variable queries) parses and selects only series engine/metrics.py exports."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = list(dashboard_exprs(dashboard["panels"]))
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        names = selected_series(expr)
        assert names, f"query selects no series: {expr}"
        unknown = set(names) - exported_series()
        assert not unknown, f"dashboard query uses series the engine does not export: {sorted(unknown)} in {expr}"
        used.update(names)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"]).group(1)
            assert metric in exported_series()
    families = {re.sub(r"_(bucket|count|sum|total|info)$", "", name) for name in used}
    for needed in ("invocations", "invocation_duration_seconds", "worker_wait_seconds", "cold_starts", "workers",
                   "worker_exits", "queue_depth", "queue_rejections", "handler_log_bytes", "image_builds"):
        assert f"functions_engine_{needed}" in families, f"the dashboard shows nothing of functions_engine_{needed}"


def test_metrics_doc_describes_every_family() -> None:
    """docs/metrics.md has a section for every metric family, with its type."""
    doc = METRICS_DOC.read_text(encoding="utf-8")
    for family in REGISTRY.collect():
        shown = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        heading = f"### `{shown}`"
        assert heading in doc, f"docs/metrics.md has no section for {shown}"
        section = doc.split(heading, 1)[1][:200]
        assert family.type in section.lower(), f"docs/metrics.md does not give the type of {shown}"


# --- the engine's own image -------------------------------------------------------------------------

BASE_IMAGE = "engine-base:bookworm"
_PROBE = """
import json, sys, urllib.error, urllib.request
out = {}
for name, url in (("healthz", "http://127.0.0.1:3001/healthz"), ("readyz", "http://127.0.0.1:3001/readyz"),
                  ("hello", "http://127.0.0.1:3000/hello"), ("metrics", "http://127.0.0.1:3001/metrics")):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            out[name] = [resp.status, resp.read().decode()]
    except urllib.error.HTTPError as exc:
        out[name] = [exc.code, exc.read().decode()]
    except OSError as exc:
        out[name] = [0, str(exc)]
print(json.dumps(out))
"""


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _ensure_base_image() -> None:
    """The locally built base (no registry here): build it through engine.images if it is missing."""
    if _docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return
    from engine import images

    ensure = getattr(images, "ensure_base_image", None)
    if ensure is None:
        pytest.fail(f"{BASE_IMAGE} is missing and engine.images has no ensure_base_image(): run `make images`")
    import docker

    client = docker.from_env()
    try:
        ensure(client, lambda line: print(line, file=sys.stderr))
    finally:
        client.close()


def _image_platforms() -> list[str]:
    """pip --platform values for bookworm (glibc 2.36) on this machine's architecture."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"manylinux2014_{arch}"]


def _fetch_wheelhouse(dest: Path) -> None:
    """Wheels for the engine's dependencies and build backend, for the image's CPython 3.11, fetched on the host."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]
    cmd = [
        sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:",
        "--implementation", "cp", "--python-version", "3.11",
        *[arg for plat in _image_platforms() for arg in ("--platform", plat)],
        "--no-input", "--disable-pip-version-check", "--progress-bar", "off", *requirements,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"pip download for the engine image failed:\n{result.stderr[-3000:]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_engine_image_builds_and_serves_on_a_read_only_root(docker_available: None, tmp_path: Path, pg_url: str) -> None:
    """The top-level Dockerfile builds on the local base; the image runs as non-root on a read-only
    root with network none, serves a bind-mounted project, answers its HEALTHCHECK, and exits 0 on SIGTERM;
    and it runs migrate-job.yaml's command as that Job's container would (read-only root, uid 10000,
    no capabilities, ENGINE_DATABASE_URL), against a real PostgreSQL, twice.

    The build does not reach PyPI itself (CI's network intercepts TLS with a CA only the host
    trusts): like engine/images/, the wheels are fetched on the host, and the build gets them
    through the Dockerfile's PIP_NO_INDEX/PIP_FIND_LINKS build args from a wheelhouse served on
    127.0.0.1 (the build uses the host network).
    """
    _ensure_base_image()
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    _fetch_wheelhouse(wheelhouse)

    project = tmp_path / "project"
    (project / "functions").mkdir(parents=True)
    (project / "functions" / "hello.py").write_text(
        "def handler(context, event, callback):\n    return callback(None, 'hello from the engine image')\n"
    )
    for path in [project, *project.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    suffix = uuid.uuid4().hex[:10]
    tag, name = f"functions-engine-test:{suffix}", f"functions-engine-test-{suffix}"
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _QuietHandler(*a, directory=str(wheelhouse))
    )
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        build = _docker(
            "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--build-arg", "PIP_NO_INDEX=1",
            "--build-arg", f"PIP_FIND_LINKS=http://127.0.0.1:{server.server_address[1]}/",
            "-t", tag, str(REPO), timeout=1500, check=False,
        )
        server.shutdown()
        assert build.returncode == 0, f"docker build failed:\n{(build.stdout + build.stderr)[-5000:]}"

        config = json.loads(_docker("image", "inspect", tag).stdout)[0]["Config"]
        assert config["User"] and config["User"].split(":")[0] not in ("", "0", "root")
        assert set(config["ExposedPorts"]) == {"3000/tcp", "3001/tcp"}
        assert config["Entrypoint"] == ["python3", "-m", "engine"]
        assert config["Cmd"] == ["serve", "/srv/project", "--host", "0.0.0.0", "--backend", "docker"]
        assert not any(e.startswith(("PIP_NO_INDEX=", "PIP_FIND_LINKS=")) for e in config["Env"]), "build args leaked"
        # Not labelled as one of the engine's own containers (the local base is): an engine
        # reaping orphans on the same daemon would otherwise remove the engine's own container.
        assert (config.get("Labels") or {}).get("io.functions-engine.managed") != "true"
        healthcheck = config["Healthcheck"]["Test"]
        assert healthcheck[0] == "CMD" and healthcheck[1] == "python3"

        _docker(
            "run", "-d", "--name", name, "--network", "none", "--read-only",
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-v", f"{project}:/srv/project:ro",
            tag, "serve", "/srv/project", "--host", "0.0.0.0", "--backend", "process",
        )
        deadline = time.monotonic() + 120
        while True:
            state = json.loads(_docker("inspect", name).stdout)[0]["State"]
            assert state["Running"], f"engine container exited ({state['ExitCode']}):\n{_docker('logs', name).stdout[-3000:]}"
            probe = _docker("exec", name, "python3", "-c", _PROBE, check=False)
            seen = json.loads(probe.stdout) if probe.returncode == 0 else {}
            if seen.get("readyz", [0])[0] == 200:
                break
            if time.monotonic() > deadline:
                logs = _docker("logs", name, check=False)
                pytest.fail(f"engine in the image not ready within 120 s: {seen or probe.stderr}\n{logs.stdout[-3000:]}")
            time.sleep(1)
        assert seen["healthz"] == [200, "ok\n"]
        assert seen["hello"] == [200, "hello from the engine image"]
        assert 'functions_engine_info{backend="process"' in seen["metrics"][1]
        assert _docker("exec", name, *healthcheck[1:], check=False).returncode == 0, "the HEALTHCHECK command fails"

        # The migration Job's container: its args, its securityContext, its one variable. Host
        # network only to reach this machine's PostgreSQL on 127.0.0.1.
        ctx = job_container()["securityContext"]
        for attempt in (1, 2):
            migrate = _docker(
                "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--user", f"{ctx['runAsUser']}:{ctx['runAsGroup']}",
                "-e", f"{database_url_env(job_container())['name']}={pg_url}",
                tag, *job_container()["args"], timeout=180, check=False,
            )
            assert migrate.returncode == 0 and "newest schema" in migrate.stdout, \
                f"db upgrade run {attempt} in the image failed:\n{migrate.stdout}{migrate.stderr[-3000:]}"

        _docker("stop", "--time", "30", name, timeout=60)
        state = json.loads(_docker("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, f"SIGTERM should drain and exit 0:\n{_docker('logs', name).stdout[-3000:]}"
    finally:
        server.shutdown()
        server.server_close()
        _docker("rm", "-f", name, check=False)
        _docker("rmi", "-f", tag, check=False, timeout=300)
