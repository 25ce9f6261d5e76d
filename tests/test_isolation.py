"""Isolation of docker workers, asserted from inside a handler (DESIGN "Non-negotiables" 2 and 9).

One engine per runtime serves two services at once (`isoa`, `isob`, routed by Host header) with a
marker variable in the engine's own environment. A handler (`functions/facts.py`) reports what a
worker can see and do as JSON; the tests assert on those facts: not root, no capabilities, a
read-only root, loopback only, the engine's port and the host's addresses unreachable, neither the
engine's environment nor the other service's `.env` visible, and /tmp gone with a recycled worker.
The handler only connects where the test tells it: the engine's ports on 127.0.0.1 and listeners
this test opens on the host's own addresses. No container outlives the module.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.docker_helpers import engine_id_of, wait_for

PROJECTS = Path(__file__).resolve().parent / "projects"
ISO_A = PROJECTS / "isolation"
ISO_B_ENV = PROJECTS / "isolation-b" / ".env"  # service b: the same probe as a, its own secrets
SECRETS = {
    "isoa": ["iso-a-secret-5e1d27c9", "iso-a-shared-0b44"],
    "isob": ["iso-b-secret-a90f3316", "iso-b-shared-77c1"],
}
MARKER = f"engine-test-marker-{uuid.uuid4().hex}"
ENGINE_LABEL = "io.functions-engine.engine"
# One worker per service: the /tmp test must know which container serves it.
CONFIG = {"min_idle": 1, "max_workers": 1}


# --- helpers -----------------------------------------------------------------------------------


def containers_of(engine_id: str) -> list[str]:
    """Names of every container (running or not) labelled with this engine id."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={ENGINE_LABEL}={engine_id}", "--format", "{{.Names}}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    return out.split()


def host_addresses() -> list[str]:
    """This host's own global addresses (v4 from /proc/net/fib_trie, v6 from /proc/net/if_inet6)."""
    found: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for previous, line in zip(lines, lines[1:]):
            if line.strip() == "/32 host LOCAL":
                found.add(previous.split()[-1])
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except OSError:
        pass
    keep = []
    for text in sorted(found):
        address = ipaddress.ip_address(text)
        if not (address.is_loopback or address.is_link_local or address.is_unspecified):
            keep.append(text)
    return keep


def target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def started_engines():
    """Every engine of this module; at its end, after they stopped, none may have left a container."""
    engines: list = []
    yield engines
    for engine in engines:
        engine.stop()
    ids = [engine_id_of(engine) for engine in engines]
    wait_for(lambda: not any(containers_of(i) for i in ids), 30, "every container of this module's engines to be removed")


@pytest.fixture(scope="module")
def iso_b(tmp_path_factory) -> Path:
    """Service b's project: service a's functions (one probe, one copy in the tree) and b's own .env."""
    project = tmp_path_factory.mktemp("iso") / "isolation-b"
    shutil.copytree(ISO_A / "functions", project / "functions")
    shutil.copy(ISO_B_ENV, project / ".env")
    return project


@pytest.fixture(scope="module")
def engine(module_engine_factory, docker_backend, started_engines, request, iso_b):
    request.getfixturevalue("docker_available")
    running = module_engine_factory(
        f"isoa={ISO_A}", f"isob={iso_b}", backend=docker_backend, config=CONFIG,
        args=["--domain", "localhost"], env={"ENGINE_TEST_MARKER": MARKER},
    )
    started_engines.append(running)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def listeners():
    """TCP listeners on every host address (never accepted from): what a worker must not reach."""
    sockets, targets = [], []
    for address in host_addresses():
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((address, 0))
        sock.listen(8)
        sockets.append(sock)
        targets.append(target(address, sock.getsockname()[1]))
    yield targets
    for sock in sockets:
        sock.close()


def facts(engine, service: str, **params: str) -> dict:
    with engine.client(timeout=60) as client:
        response = client.get("/facts", params=params, headers={"Host": f"{service}.localhost:{engine.port}"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def facts_a(engine) -> dict:
    return facts(engine, "isoa")


@pytest.fixture(scope="module")
def facts_b(engine) -> dict:
    return facts(engine, "isob")


# --- tests -------------------------------------------------------------------------------------


def test_the_probe_is_the_same_in_both_services(iso_b):
    assert (ISO_A / "functions/facts.py").read_bytes() == (iso_b / "functions/facts.py").read_bytes()


def test_worker_is_not_root(facts_a):
    assert facts_a["uid"] != 0 and facts_a["euid"] != 0 and facts_a["gid"] != 0
    assert 0 not in facts_a["groups"]
    assert all(int(uid) != 0 for uid in facts_a["status"]["Uid"].split()), facts_a["status"]


def test_worker_has_no_capabilities(facts_a):
    """CapEff (and the permitted and bounding sets) are empty: nothing to escalate with."""
    status = facts_a["status"]
    assert int(status["CapEff"], 16) == 0, status
    assert int(status["CapPrm"], 16) == 0, status
    assert int(status["CapBnd"], 16) == 0, status
    if status.get("NoNewPrivs") is not None:  # gVisor's status has no such line
        assert status["NoNewPrivs"] == "1"


def test_root_filesystem_is_read_only_and_only_tmp_is_writable(facts_a):
    writes = facts_a["writes"]
    for path in ("/etc/engine-probe", "/engine-probe", "/srv/project/engine-probe"):
        assert writes[path] in ("EROFS", "EACCES", "EPERM"), writes  # runc: EROFS; gVisor checks permissions first
    assert writes["/tmp/engine-probe"] == "written"
    assert "ro" in facts_a["mounts"]["/"].split(","), facts_a["mounts"]
    assert "noexec" in facts_a["mounts"]["/tmp"].split(","), facts_a["mounts"]


def test_only_the_loopback_interface_exists(facts_a):
    interfaces = facts_a["interfaces"]
    seen = [names for names in interfaces.values() if isinstance(names, list)]
    assert seen, f"neither /sys/class/net nor /proc/net/dev could be read: {interfaces}"
    assert all(names == ["lo"] for names in seen), interfaces


def test_the_engine_and_the_host_are_unreachable(engine, listeners):
    """The engine's ports on 127.0.0.1 and listeners on every host address: reachable from the host,
    not from a worker (its 127.0.0.1 is its own loopback, and it has no other interface)."""
    assert listeners, "the host has no global address to test against"
    for address in listeners:  # the premise: each listener answers from the host
        host, _, port = address.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            pass
    admin_port = int(engine.admin_url.rsplit(":", 1)[1])
    targets = [target("127.0.0.1", engine.port), target("127.0.0.1", admin_port), *listeners]
    for service in ("isoa", "isob"):
        result = facts(engine, service, targets=",".join(targets))["connect"]
        assert set(result) == set(targets)
        assert all(outcome != "connected" for outcome in result.values()), result


def test_the_engines_environment_is_not_visible(engine, facts_a, facts_b):
    """A marker in the engine's own environment is in no worker's os.environ, /proc/*/environ or cmdline."""
    engine_environ = Path(f"/proc/{engine.proc.pid}/environ").read_bytes()
    assert MARKER.encode() in engine_environ, "the premise: the engine itself has the marker"
    for seen in (facts_a, facts_b):
        assert "1/environ" in seen["processes"] and not seen["processes"]["1/environ"].startswith("unreadable")
        assert not any(key.startswith("ENGINE_") for key in seen["environ"]), seen["environ"]
        assert MARKER not in json.dumps(seen)


@pytest.mark.parametrize("service, other", [("isoa", "isob"), ("isob", "isoa")])
def test_another_services_env_values_are_not_visible(engine, service, other, facts_a, facts_b):
    """A service sees its own `.env` on `context` and nothing of the other's, anywhere it can look."""
    seen = {"isoa": facts_a, "isob": facts_b}[service]
    assert seen["context"]["DOMAIN_NAME"] == f"{service}.localhost:{engine.port}"
    text = json.dumps(seen)
    for value in SECRETS[service]:
        assert value in seen["context"].values(), "the premise: its own .env is loaded"
    for value in SECRETS[other]:
        assert value not in text
    assert not any(".env" in path for path in seen["project_files"]), "no .env is baked into an image"


def test_tmp_files_are_gone_once_the_worker_is_recycled(engine):
    """A file in /tmp survives on the same worker (the premise), not into the worker that replaces it."""
    name, token = f"iso-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    first = facts(engine, "isoa", mode="write-tmp", name=name, content=token)
    again = facts(engine, "isoa", mode="list-tmp")
    assert again["hostname"] == first["hostname"] and name in again["tmp"], "the premise: the same worker keeps /tmp"
    dirty = facts(engine, "isoa", mode="leave-thread")  # a thread left running: the worker is recycled
    assert dirty["hostname"] == first["hostname"]
    after = facts(engine, "isoa", mode="facts")
    assert after["hostname"] != first["hostname"], "a dirty worker must not be reused"
    assert not any(name in path for path in after["tmp_files"]) and token not in json.dumps(after["tmp_files"])
    wait_for(
        lambda: not subprocess.run(["docker", "ps", "-aq", "--filter", f"id={first['hostname']}"],
                                   capture_output=True, text=True, timeout=30, check=True).stdout.strip(),
        15, f"the recycled container {first['hostname']} to be removed",
    )
