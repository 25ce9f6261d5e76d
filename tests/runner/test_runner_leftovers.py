"""Attacks on `done.clean`: signals, timers, grandchildren and threads a handler leaves behind.

The contract (behavior.md, callback): nothing the handler scheduled may run after the callback, on
this request or a later one. Each test drives the real runner over the protocol and checks that the
leftover either cannot run again (handlers reset, timers cancelled) or makes the invocation
unclean, so the engine replaces the worker. End to end through the engine: tests/test_leftovers.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from runner_harness import RunnerHarness

STATE = """
import os, signal, threading, time
TICKS = []
MUTATED = []
def handler(context, event, callback):
    if event.get("mode") != "state":
        return attack(context, event, callback)
    callback(None, {"pid": os.getpid(), "ticks": len(TICKS), "mutated": list(MUTATED),
                    "usr1_default": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
                    "timer": signal.getitimer(signal.ITIMER_REAL)[0]})
"""

SPIN = "import time\ndef handler(context, event, callback):\n    end = time.process_time() + 0.3\n    while time.process_time() < end:\n        pass\n    callback(None, 'spun')\n"
NAP = "import time\ndef handler(context, event, callback):\n    time.sleep(float(event['s']))\n    callback(None, 'awake')\n"


def _runner(make_runner: Callable[..., RunnerHarness], attack: str) -> RunnerHarness:
    """`hostile` runs `attack` (the handler under test, named `attack`); with mode=state it reports
    its module state (TICKS, MUTATED) and the runner's signal state."""
    return make_runner({"functions/hostile.py": STATE + attack.replace("def handler(", "def attack("),
                        "functions/nap.py": NAP, "functions/spin.py": SPIN})


def _state(runner: RunnerHarness) -> dict:
    return runner.invoke("hostile", {"mode": "state"}).json()


def test_handler_alarm_cannot_kill_a_later_invocation(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import signal
def handler(context, event, callback):
    signal.alarm(1)
    return callback(None, "armed")
""")
    outcome = runner.invoke("hostile")
    assert outcome.body == "armed"
    assert outcome.done["clean"] is False and "ITIMER_REAL" in outcome.done["reason"]
    assert runner.invoke("nap", {"s": "1.5"}).body == "awake"  # the alarm was due during this one
    assert runner.proc.poll() is None, "the runner died of the handler's alarm"
    assert _state(runner)["timer"] == 0


def test_handler_itimer_handler_never_runs_in_a_later_invocation(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import signal
def handler(context, event, callback):
    signal.signal(signal.SIGALRM, lambda *_: TICKS.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.3, 0.05)
    callback(None, "ticking")
""")
    outcome = runner.invoke("hostile")
    assert outcome.done["clean"] is False and "ITIMER_REAL" in outcome.done["reason"]
    assert runner.invoke("nap", {"s": "0.8"}).body == "awake"
    assert _state(runner)["ticks"] == 0, "the handler's SIGALRM handler ran after the callback"


def test_handler_virtual_and_profiling_timers_are_cancelled(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import signal
def handler(context, event, callback):
    signal.signal(signal.SIGVTALRM, lambda *_: TICKS.append(1))
    signal.signal(signal.SIGPROF, lambda *_: TICKS.append(1))
    signal.setitimer(signal.ITIMER_VIRTUAL, 0.01, 0.01)
    signal.setitimer(signal.ITIMER_PROF, 0.01, 0.01)
    callback(None, "ticking")
""")
    outcome = runner.invoke("hostile")
    assert outcome.done["clean"] is False
    assert "ITIMER_VIRTUAL" in outcome.done["reason"] and "ITIMER_PROF" in outcome.done["reason"]
    assert runner.invoke("spin").body == "spun"  # CPU time: when those timers would fire
    assert _state(runner)["ticks"] == 0


def test_an_alarm_armed_behind_the_signal_module_cannot_kill_a_later_invocation(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import ctypes
def handler(context, event, callback):
    ctypes.CDLL(None).alarm(1)
    callback(None, "armed")
""")
    runner.invoke("hostile")
    later = runner.invoke("nap", {"s": "1.5"})
    assert later.body == "awake" and runner.proc.poll() is None
    # The stray SIGALRM found the runner's own handler: the worker is marked for replacement.
    assert later.done["clean"] is False and "timer signal" in later.done["reason"]


def test_a_cancelled_alarm_and_a_restored_handler_leave_the_worker_clean(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import signal
def handler(context, event, callback):
    signal.signal(signal.SIGUSR1, lambda *_: TICKS.append(1))
    signal.signal(signal.SIGALRM, lambda *_: None)
    signal.alarm(5)  # a timeout guard, cancelled before answering
    signal.alarm(0)
    callback(None, "ok")
""")
    assert runner.invoke("hostile").done["clean"] is True
    state = runner.invoke("hostile", {"mode": "state"})
    assert state.done["clean"] is True
    assert state.json()["usr1_default"] is True, "the handler's SIGUSR1 handler outlived its invocation"


def test_backgrounded_grandchild_cannot_outlive_its_invocation(
        make_runner: Callable[..., RunnerHarness], tmp_path: Path) -> None:
    marker = tmp_path / f"grandchild-{uuid.uuid4().hex[:8]}"
    runner = _runner(make_runner, f"""
import subprocess
def handler(context, event, callback):
    subprocess.Popen("(sleep 30; echo x > {marker}) &", shell=True).wait()  # the shell exits at once
    callback(None, "spawned")
""")
    outcome = runner.invoke("hostile")
    _kill_reported(outcome.done["reason"] or "")
    assert outcome.done["clean"] is False and "child processes still running" in outcome.done["reason"]
    assert not marker.exists()


def test_a_double_forked_session_leader_cannot_outlive_its_invocation(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import os
def handler(context, event, callback):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            import time
            time.sleep(30)
        os._exit(0)
    os.waitpid(pid, 0)
    callback(None, "daemonised")
""")
    outcome = runner.invoke("hostile")
    _kill_reported(outcome.done["reason"] or "")
    assert outcome.done["clean"] is False and "child processes still running" in outcome.done["reason"]


def test_a_grandchild_that_exits_before_the_answer_leaves_the_worker_clean(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import subprocess, time
def handler(context, event, callback):
    subprocess.Popen("true &", shell=True).wait()
    time.sleep(0.3)  # the orphan ended and is a zombie of the runner's, which clean-up reaps
    callback(None, "ok")
""")
    assert runner.invoke("hostile").done["clean"] is True
    assert runner.invoke("hostile", {"mode": "state"}).done["clean"] is True


def test_a_thread_mutating_state_after_the_callback_gets_no_grace(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import threading, time
def handler(context, event, callback):
    threading.Thread(target=lambda: (time.sleep(0.05), MUTATED.append("late")), name="mutator").start()
    return callback(None, "ok")
""")
    started = time.monotonic()
    outcome = runner.invoke("hostile")
    assert outcome.done["clean"] is False and "mutator" in outcome.done["reason"]
    assert time.monotonic() - started < 10


def test_a_thread_running_at_the_callback_is_unclean_even_if_it_ends_before_the_check(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import threading, time
def handler(context, event, callback):
    threading.Thread(target=lambda: (time.sleep(0.05), MUTATED.append("late")), name="mutator").start()
    callback(None, "ok")
    time.sleep(0.3)  # the thread has mutated and ended by the time the handler returns
""")
    outcome = runner.invoke("hostile")
    assert outcome.done["clean"] is False and "mutator" in outcome.done["reason"]


def test_a_raw_thread_running_at_the_callback_is_unclean(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import _thread, time
def handler(context, event, callback):
    _thread.start_new_thread(lambda: (time.sleep(0.05), MUTATED.append("late")), ())
    return callback(None, "ok")
""")
    assert runner.invoke("hostile").done["clean"] is False


def test_threads_joined_before_the_callback_leave_the_worker_clean(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import threading
def handler(context, event, callback):
    out = []
    threads = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return callback(None, sorted(out))
""")
    for _ in range(3):
        outcome = runner.invoke("hostile")
        assert outcome.json() == [0, 1, 2, 3] and outcome.done["clean"] is True


def test_to_thread_in_an_async_handler_leaves_the_worker_clean(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import asyncio, time
async def handler(context, event, callback):
    await asyncio.to_thread(time.sleep, 0.01)
    return callback(None, "ok")
""")
    for _ in range(3):
        assert runner.invoke("hostile").done["clean"] is True


def test_the_runner_is_a_child_subreaper() -> None:
    """The start-up call itself (Linux): an orphan re-parents to the runner, not to init."""
    code = ("import os, sys, time, subprocess; sys.path.insert(0, sys.argv[1]);"
            "from functions_runtime.descendants import become_subreaper, child_pids;"
            "assert become_subreaper();"
            "subprocess.Popen('sleep 30 &', shell=True).wait(); time.sleep(0.3);"
            "pids = child_pids(); print(pids); [os.kill(pid, 9) for pid in pids]")
    runner_dir = Path(__file__).resolve().parents[2] / "runner-image" / "python"
    out = subprocess.run([sys.executable, "-c", code, str(runner_dir)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 1, out.stdout


def _kill_reported(reason: str) -> None:
    """End the processes a `done.reason` names ("child processes still running: 12 (sh), ...") and
    their descendants, which would outlive the runner when the harness closes it."""
    pids = [int(pid) for pid in re.findall(r"(\d+) \(", reason.split("child processes still running:", 1)[-1])]
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                data = Path(f"/proc/{entry}/stat").read_bytes()
                parents[int(entry)] = int(data[data.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree = set(pids)
    while grown := {pid for pid, ppid in parents.items() if ppid in tree} - tree:
        tree |= grown
    for signum in (signal.SIGSTOP, signal.SIGKILL):  # stopped first: a parent cannot react to its child's death
        for pid in tree:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def test_signals_blocked_by_a_handler_are_unblocked_after_it(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = _runner(make_runner, """
import signal
def handler(context, event, callback):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR2})
    callback(None, "blocked")
""")
    outcome = runner.invoke("hostile")
    assert outcome.done["clean"] is False and "blocked" in outcome.done["reason"]
    probe = runner.invoke("hostile", {"mode": "state"})
    assert probe.done["clean"] is True
    runner.proc.terminate()  # the runner's SIGTERM handler must work again
    assert runner.proc.wait(timeout=10) == 128 + signal.SIGTERM
