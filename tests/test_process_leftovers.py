"""Process backend: nothing a worker starts outlives it, its engine, or its engine's crash.

A handler starts `sleep 300` with a unique marker as argv[0], either double-forked out of the
worker's tree and session (`setsid`), or as a `setsid` child held while the invocation runs. After
the invocation, after the engine's SIGTERM, and after its SIGKILL followed by a new engine's start,
no process with the marker may be left (read from /proc) and no temp dir of the engine either.
Each engine gets its own TMPDIR, so the temp roots checked are this test's alone.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

PROJECT = Path(__file__).resolve().parent / "projects" / "process-leftovers"
CONFIG = {"min_idle": 1, "max_workers": 2, "time_limit_s": 60}


def marked(marker: str) -> list[int]:
    """Live processes whose argv[0] is the marker (zombies have no command line left)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(f"leftover-{marker}\0".encode()):
                found.append(int(entry))
    return found


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def roots(tmpdir: Path) -> list[Path]:
    parent = tmpdir / f"functions-engine-process-{os.getuid()}"
    return sorted(parent.iterdir()) if parent.is_dir() else []


def hold_in_background(engine, marker: str, hold_s: float) -> threading.Thread:
    """An invocation that leaves a setsid child and stays running; its outcome does not matter."""
    def run() -> None:
        try:
            httpx.get(engine.url + "/fork", params={"marker": marker, "mode": "setsid-child", "hold": str(hold_s)},
                      timeout=hold_s + 30)
        except httpx.HTTPError:
            pass  # the engine was stopped under it

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir()
    return {"TMPDIR": str(tmp_path / "tmp")}


@pytest.fixture
def marker() -> str:
    value = uuid.uuid4().hex
    yield value
    for pid in marked(value):  # whatever the outcome, leave nothing behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_double_forked_setsid_sleep_is_gone_after_the_invocation(engine_factory, tmpdir_env, marker):
    engine = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    with engine.client() as client:
        response = client.get("/fork", params={"marker": marker, "mode": "double-fork"})
    assert response.status_code == 200, response.text
    wait_for(lambda: not marked(marker), 20, f"the double-forked sleep {marked(marker)} is still running")
    with engine.client() as client:  # the engine keeps serving
        assert client.get("/fork", params={"marker": marker + "-2", "mode": "double-fork"}).status_code == 200
    wait_for(lambda: not marked(marker + "-2"), 20, "the second double-forked sleep is still running")


def test_daemon_holding_a_crashed_runners_pipes_cannot_outlive_it(engine_factory, tmpdir_env, tmp_path):
    """The runner exits while a daemon it double-forked holds its stdout: the crash is answered and the
    daemon ended at once, not when the engine's periodic sweep comes round (up to 5 s)."""
    engine = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    late = tmp_path / "late-write"
    with engine.client() as client:
        response = client.get("/fork", params={"mode": "crash-late-write", "path": str(late)})
    assert response.status_code == 502, response.text
    time.sleep(1.5)  # the daemon would write its file 1 s after it started
    assert not late.exists(), "the daemon of a crashed runner ran on after the crash"


def test_setsid_child_and_temp_dirs_are_gone_after_sigterm(engine_factory, tmpdir_env, tmp_path, marker):
    engine = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    assert len(roots(tmp_path / "tmp")) == 1, "the engine keeps its workers' dirs under one temp root"
    thread = hold_in_background(engine, marker, hold_s=3)
    wait_for(lambda: marked(marker), 20, "the handler's setsid child never started")
    assert engine.stop(signal.SIGTERM, timeout=60) == 0, engine.logs()[-3000:]
    thread.join(30)
    assert not marked(marker), "the setsid child outlived the engine's SIGTERM"
    assert list((tmp_path / "tmp").iterdir()) == [], "the engine's temp dirs outlived its SIGTERM"


def test_leftovers_of_a_sigkilled_engine_are_removed_by_the_next_engine_start(
        engine_factory, tmpdir_env, tmp_path, marker):
    crashed = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    hold_in_background(crashed, marker, hold_s=30)
    wait_for(lambda: marked(marker), 20, "the handler's setsid child never started")
    [dead_root] = roots(tmp_path / "tmp")
    crashed.stop(signal.SIGKILL)
    time.sleep(0.5)
    # The attack is real: a SIGKILLed engine cannot clean up, its worker's setsid child survives.
    assert marked(marker), "the setsid child died with the engine by itself: the test proves nothing"
    assert dead_root.is_dir()

    successor = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    assert not marked(marker), "the new engine left the dead engine's worker process running"
    live_roots = roots(tmp_path / "tmp")
    assert dead_root not in live_roots, "the new engine left the dead engine's temp root"
    assert len(live_roots) == 1
    assert successor.stop(signal.SIGTERM, timeout=60) == 0
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_new_engine_never_touches_a_live_engines_workers_or_temp_root(
        engine_factory, tmpdir_env, tmp_path, marker):
    first = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    hold_in_background(first, marker, hold_s=50)  # outlasts the second engine's start on a loaded machine
    wait_for(lambda: marked(marker), 20, "the handler's setsid child never started")
    [first_root] = roots(tmp_path / "tmp")
    second = engine_factory(PROJECT, backend="process", config=CONFIG, env=tmpdir_env)
    assert first_root.is_dir(), "a new engine removed a live engine's temp root"
    assert marked(marker), "a new engine killed a live engine's worker process"
    assert len(roots(tmp_path / "tmp")) == 2
    with first.client() as client:  # the first engine's other worker still serves
        assert client.get("/fork", params={"marker": marker + "-2"}).status_code == 200
    assert second.stop(signal.SIGTERM, timeout=60) == 0
    # A second SIGTERM skips the drain of the held invocation: workers are still removed, with all they started.
    first.proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert first.stop(signal.SIGTERM, timeout=60) == 130
    assert not marked(marker) and not marked(marker + "-2")
    assert list((tmp_path / "tmp").iterdir()) == []
