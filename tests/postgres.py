"""A real PostgreSQL server for the shared-store tests: its admin URL (from `make test`, else from
`scripts/ensure-postgres`), and a fresh database per test, dropped after.

Without a server these tests fail, never skip: the shared store must be proven on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
URL_ENV = "ENGINE_TEST_DATABASE_URL"


def admin_url() -> str:
    url = os.environ.get(URL_ENV)
    if url:
        return url
    done = subprocess.run([str(REPO / "scripts" / "ensure-postgres")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"no PostgreSQL server for the shared-store tests: scripts/ensure-postgres failed "
                    f"({done.returncode}): {done.stderr.strip()[-800:]}; run `make test`, or set {URL_ENV}")
    url = done.stdout.strip().splitlines()[-1]
    os.environ[URL_ENV] = url  # once per session
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str = "fe_test") -> tuple[str, str]:
    """A new empty database: (its name, its URL)."""
    admin = admin_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    return name, with_database(admin, name)


def drop_database(name: str) -> None:
    """Drop it, ending its sessions; a session that is just starting (an autovacuum worker, a
    replica's reconnect) can make one attempt fail, so three are made."""
    import time

    for attempt in range(3):
        try:
            asyncio.run(_admin(admin_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except Exception:
            if attempt == 2:
                raise
            time.sleep(1)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (`postgresql://…`), dropped after it."""
    name, url = create_database()
    try:
        yield url
    finally:
        drop_database(name)


# --- a private PostgreSQL server, for tests that stop, kill and restart it ----------------------

PRIVATE_WAIT_S = 60


def pg_bin_dir() -> Path:
    """The newest installed server's binaries, as scripts/ensure-postgres picks them."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
    if not found or not (found[-1] / "initdb").exists():
        pytest.fail("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: run scripts/ensure-postgres (installs Debian's postgresql)")
    return found[-1]


class PrivateCluster:
    """A throwaway cluster of its own (initdb in a temporary directory, trust auth, 127.0.0.1 and a
    private socket directory only) that a test may stop, kill and start without touching the shared
    server. `url` is its `postgres` database as the superuser `postgres`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.logfile = root / "server.log"
        self.port = port
        self.bin = pg_bin_dir()
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _as_postgres(self, *cmd: str, timeout: float = PRIVATE_WAIT_S) -> subprocess.CompletedProcess[str]:
        runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*runas, *cmd], capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        for path in (self.root, self.socket_dir):
            path.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        done = self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                                 "--no-sync", "-E", "UTF8")
        assert done.returncode == 0, f"initdb failed: {done.stderr[-2000:]}"

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off"
        done = self._as_postgres(str(self.bin / "pg_ctl"), "start", "-w", "-t", str(PRIVATE_WAIT_S), "-D", str(self.data),
                                 "-l", str(self.logfile), "-o", options)
        assert done.returncode == 0, f"pg_ctl start failed: {done.stderr[-2000:]} {self.log_tail()}"

    def stop(self) -> None:
        """A clean, fast shutdown: open connections are closed by the server."""
        done = self._as_postgres(str(self.bin / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))
        assert done.returncode == 0, f"pg_ctl stop failed: {done.stderr[-2000:]}"

    def kill(self) -> None:
        """SIGKILL to the postmaster (a crash); its backends exit on their own. `start()` recovers."""
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, 9)
            for _ in range(PRIVATE_WAIT_S * 10):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)

    def freeze(self) -> None:
        """SIGSTOP to the server and its backends: a database that accepts TCP but never answers."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        pid = self.postmaster_pid()
        if pid is None:
            return
        pids = [pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                pids.append(int(stat.parent.name))
        for each in pids:
            try:
                os.kill(each, sig)
            except ProcessLookupError:
                pass

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        return self._as_postgres(str(self.bin / "pg_ctl"), "status", "-D", str(self.data)).returncode == 0

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def remove(self) -> None:
        self.thaw()
        if self.data.exists() and self.running():
            done = self._as_postgres(str(self.bin / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data))
            if done.returncode != 0:
                self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A private PostgreSQL cluster, started; stopped and removed after the test whatever happened."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="fe-private-pg-")), port)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
