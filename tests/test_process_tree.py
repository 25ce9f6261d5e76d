"""engine/backends/process_tree.py on its own: which temp roots belong to dead engines.

The end-to-end attacks (a double-forked `setsid` sleep, an engine SIGKILLed) are in
tests/test_process_leftovers.py; these pin the naming rule they rely on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.backends import process_tree


def test_own_root_is_named_by_pid_and_start_time():
    pid, start = process_tree.own_root_name().split("-")
    assert int(pid) == os.getpid()
    assert int(start) == process_tree.proc_stat(os.getpid()).start_ticks


def test_only_roots_of_dead_engines_are_removed(tmp_path):
    live = tmp_path / process_tree.own_root_name()
    # The same pid with another start time: an engine that died and whose pid was reused.
    reused = tmp_path / f"{os.getpid()}-{process_tree.proc_stat(os.getpid()).start_ticks + 1}"
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    gone = tmp_path / f"{exited.pid}-1"
    foreign = tmp_path / "not-an-engine-root"
    for root in (live, reused, gone, foreign):
        (root / "worker-x").mkdir(parents=True)
    removed = process_tree.reap_dead_roots(tmp_path)
    assert sorted(removed) == sorted([reused, gone])
    assert live.is_dir() and foreign.is_dir()
    assert not reused.exists() and not gone.exists()


def test_kill_marked_ends_a_process_carrying_a_dead_roots_marker(tmp_path):
    root = tmp_path / "1-1"
    env = {**os.environ, process_tree.MARKER_VAR: str(root)}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=env)
    try:
        deadline = time.monotonic() + 10  # until exec: before it, the child still has our environment
        while f"{process_tree.MARKER_VAR}={root}".encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes():
            assert time.monotonic() < deadline, "the marked process never started"
            time.sleep(0.01)
        assert process_tree.kill_marked(root) >= 1
        assert proc.wait(timeout=10) < 0
    finally:
        proc.kill()
        proc.wait()
