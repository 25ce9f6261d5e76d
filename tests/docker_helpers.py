"""Helpers shared by the docker-only modules (isolation, limits, lifecycle)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
import pytest

from engine import images
from engine.backends.docker_reaper import SERVICE_LABEL


def wait_for(predicate, timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def log_records(engine) -> list[dict]:
    """The engine's JSON log lines, parsed (plain start-up lines skipped)."""
    records = []
    for line in engine.logs().splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def engine_id_of(engine) -> str:
    """The engine id its docker backend logged at start-up (the value of its containers' engine label)."""

    def find():
        return next((r["engine_id"] for r in log_records(engine) if r.get("event") == "docker_backend_started"), None)

    return wait_for(find, 30, "the docker_backend_started log line")


def docker_cli(*args: str, host: str | None = None, check: bool = True) -> str:
    env = dict(os.environ)
    if host:
        env["DOCKER_HOST"] = host
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env=env, check=check).stdout


class SecondDaemon:
    """A dockerd of this module's own in a temp dir: its socket, data, exec root and containerd."""

    def __init__(self, root: Path, live_restore: bool = False) -> None:
        self.root = root
        self.host = f"unix://{root}/docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        runsc = shutil.which("runsc") or "/usr/bin/runsc"
        config: dict = {"runtimes": {"runsc": {"path": runsc, "runtimeArgs": ["--network=none", "--host-uds=open"]}}}
        if live_restore:  # containers outlive the daemon, as scripts/ensure-docker configures it
            config["live-restore"] = True
        (root / "daemon.json").write_text(json.dumps(config))

    def start(self, timeout: float = 60) -> None:
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false", "--shutdown-timeout=2",
                    "--host", self.host, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                    "--pidfile", str(self.root / "docker.pid"), "--config-file", str(self.root / "daemon.json"),
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"dockerd exited with {proc.returncode}:\n{self.log()[-3000:]}")
            return subprocess.run(["docker", "info"], capture_output=True, timeout=30,
                                  env={**os.environ, "DOCKER_HOST": self.host}).returncode == 0

        wait_for(answers, timeout, "the second dockerd to answer")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """Signal dockerd and wait for it, and for the containerd it started.

        A killed dockerd's containerd dies too but may linger as a zombie (reparented to an init
        that reaps late); a new dockerd takes its pid for alive and times out waiting for it. Once
        it is dead its pid file is stale, so it is removed, as an init system's clean-up would.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        containerd = self._containerd_pid()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if containerd is not None:
            try:
                wait_for(lambda: not self._ours(containerd), 30, "the second dockerd's containerd to exit")
            except AssertionError:
                os.kill(containerd, signal.SIGKILL)
                wait_for(lambda: not self._ours(containerd), 10, "the second dockerd's containerd to die")
            (self.root / "exec/containerd/containerd.pid").unlink(missing_ok=True)

    def _containerd_pid(self) -> int | None:
        try:
            pid = int((self.root / "exec/containerd/containerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._ours(pid) else None

    def _ours(self, pid: int) -> bool:
        """Whether `pid` is alive (not a zombie) and runs with this daemon's directory on its command line."""
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return state != "Z" and str(self.root) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except (OSError, IndexError):
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")

    def all_containers(self) -> list[str]:
        return docker_cli("ps", "-aq", "--no-trunc", host=self.host).split()

    def remove_everything(self) -> None:
        """Stop it (leaving no container, mount or directory behind), whatever state it is in."""
        try:
            if not self.running:
                self.start()
            for container_id in self.all_containers():
                docker_cli("rm", "-f", container_id, host=self.host, check=False)
        finally:
            self.stop()
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
            for point in sorted((m for m in mounts if m.startswith(str(self.root))), key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
            shutil.rmtree(self.root, ignore_errors=True)


def second_daemon_with_images(live_restore: bool = False) -> Iterator[SecondDaemon]:
    """For a module fixture: a second dockerd with the base and runner images loaded (saves the
    engine a debootstrap); everything on it is removed at the end, and nothing may be left."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.fail("starting a second dockerd needs root and the dockerd binary (run `make test` as root: it provisions Docker)")
    # Short path: unix socket paths (containerd's included) must stay under 108 bytes.
    daemon = SecondDaemon(Path(tempfile.mkdtemp(prefix="edt-", dir="/tmp")), live_restore=live_restore)
    leftovers: list[str] = []
    try:
        daemon.start()
        client = docker.from_env()
        try:
            runner = images.ensure_runner_image(client, "python")
        finally:
            client.close()
        save = subprocess.Popen(["docker", "save", images.BASE_TAG, runner], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "load", "-q"], stdin=save.stdout, capture_output=True, timeout=300,
                              env={**os.environ, "DOCKER_HOST": daemon.host})
        assert save.stdout is not None
        save.stdout.close()
        assert save.wait(300) == 0 and load.returncode == 0, load.stderr
        yield daemon
        leftovers = daemon.all_containers() if daemon.running else []
    finally:
        daemon.remove_everything()
    assert not leftovers, f"containers left on the second daemon: {leftovers}"


@pytest.fixture
def remove_images(engine_factory) -> Iterator[list[str]]:
    """Service names whose images the test built: removed at the end, whatever happened, once the
    test's engines are stopped (an image a running worker uses cannot be removed)."""
    names: list[str] = []
    yield names
    engine_factory.close()
    client = docker.from_env()
    try:
        for name in names:
            for image in client.images.list(filters={"label": f"{SERVICE_LABEL}={name}"}):
                try:
                    client.images.remove(image.id, force=True)
                except docker.errors.APIError:
                    pass
    finally:
        client.close()
