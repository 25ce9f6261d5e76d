"""Conformance: "After the first call the invocation is over" (behavior.md, callback section).

Work a handler leaves behind (asyncio tasks, loop callbacks, timers, threads) never runs: not
after the reply, and not during a later invocation on the same worker. Work the runner can cancel
leaves the worker clean and reusable; a thread it cannot stop makes the worker recycled.

The engine runs one worker (`min_idle=1`, `max_workers=1`), so consecutive requests land on the
same worker unless it was replaced. The handler's module globals record what fired on a worker,
and every firing prints `LEFTOVER FIRED <tag>`, which must never reach the engine's log.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
LEFTOVERS = PROJECTS / "leftovers"

DELAY_S = 1.0  # leftover work would fire this long after it was scheduled


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(LEFTOVERS, backend=backend, config={"min_idle": 1, "max_workers": 1})


def get(engine, path: str = "/leftover", **params: str) -> dict:
    with engine.client() as client:
        response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def process_of(worker: str) -> str:
    """`host:pid` of a worker id (the uuid part differs between modules of one worker)."""
    return worker.rsplit(":", 1)[0]


def assert_never_fired(engine, tag: str, scheduled_at: float) -> None:
    remaining = scheduled_at + DELAY_S + 1.0 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert f"LEFTOVER FIRED {tag}" not in engine.logs(), f"leftover work {tag} ran after the callback"


@pytest.mark.parametrize(
    "path, mode",
    [
        ("/leftover", "task-after-callback"),
        ("/leftover", "task-before-callback"),
        ("/leftover", "call-later-after-callback"),
        ("/leftover", "call-soon-after-callback"),
        # A threading.Timer not yet fired can be cancelled (as clearTimeout would), so it too
        # leaves the worker clean.
        ("/leftover", "timer-after-callback"),
        ("/sync-leftover", None),
    ],
)
def test_cancellable_leftovers_never_run_and_the_worker_is_reused(engine, path, mode):
    tag = uuid.uuid4().hex[:10]
    scheduled_at = time.monotonic()
    params = {"tag": tag, "delay": str(DELAY_S)}
    if mode:
        params["mode"] = mode
    first = get(engine, path, **params)
    # The next invocation runs on the same worker across the moment the leftover was due.
    later = get(engine, mode="sleep-then-state", seconds=str(DELAY_S + 0.5))
    assert process_of(later["worker"]) == process_of(first["worker"]), "a worker whose leftovers were all cancelled is reused"
    assert tag not in later["fired"]
    assert_never_fired(engine, tag, scheduled_at)


@pytest.mark.parametrize(
    "mode", ["thread-before-callback", "daemon-thread-before-callback", "executor-after-callback"]
)
def test_leftovers_that_cannot_be_stopped_get_the_worker_recycled_before_they_run(engine, mode):
    tag = uuid.uuid4().hex[:10]
    scheduled_at = time.monotonic()
    first = get(engine, mode=mode, tag=tag, delay=str(DELAY_S))
    after = get(engine, mode="state")
    assert process_of(after["worker"]) != process_of(first["worker"]), "the dirty worker was reused"
    assert tag not in after["fired"]
    assert_never_fired(engine, tag, scheduled_at)


def test_a_task_that_ignores_cancellation_never_runs_again(engine):
    """Whether the runner recycles the worker or discards the task with its event loop is its choice;
    either way the task never gets to run, on this worker or anywhere."""
    tag = uuid.uuid4().hex[:10]
    scheduled_at = time.monotonic()
    get(engine, mode="stubborn-task", tag=tag, delay=str(DELAY_S))
    later = get(engine, mode="sleep-then-state", seconds=str(DELAY_S + 0.5))
    assert tag not in later["fired"]
    assert_never_fired(engine, tag, scheduled_at)


def test_a_clean_worker_keeps_its_module_state_between_invocations(engine):
    """Control for the tests above: without leftovers, consecutive invocations share one worker."""
    workers = {get(engine, mode="state")["worker"] for _ in range(5)}
    assert len(workers) == 1


# --- Signals, timers, grandchildren and threads (functions/hostile.py) -----------------------------
#
# Each attack runs once on the pool's only worker; the requests after it must all answer 200 and
# must never see the leftover, which means the worker was replaced before it could act.

def watch(engine, seconds: float, **params: str) -> list[dict]:
    """`mode=state` requests for `seconds`, each of which must answer 200."""
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen.append(get(engine, "/hostile", mode="state", **params))
        time.sleep(0.1)
    return seen


def test_handler_alarm_cannot_kill_a_later_invocation(engine):
    first = get(engine, "/hostile", mode="alarm")
    seen = watch(engine, 2.5)  # the alarm was due after 1 s
    assert process_of(first["worker"]) not in {process_of(s["worker"]) for s in seen}, "the worker with an alarm was reused"
    assert "SIGALRM" not in engine.logs()


def test_handler_itimer_handler_never_runs_in_a_later_invocation(engine):
    first = get(engine, "/hostile", mode="itimer")
    seen = watch(engine, 1.5)
    assert all(s["ticks"] == 0 for s in seen), "the handler's SIGALRM handler ran after its invocation"
    assert process_of(first["worker"]) not in {process_of(s["worker"]) for s in seen}


def test_an_alarm_armed_behind_the_signal_module_cannot_kill_a_later_invocation(engine):
    first = get(engine, "/hostile", mode="ctypes-alarm")
    seen = watch(engine, 2.5)  # every request answers: the stray SIGALRM finds the runner's handler
    assert process_of(seen[-1]["worker"]) != process_of(first["worker"]), "the worker that got a stray alarm was kept"


@pytest.mark.parametrize("mode", ["grandchild", "daemon"])
def test_backgrounded_grandchild_cannot_outlive_its_invocation(engine, mode):
    tag = uuid.uuid4().hex[:10]
    try:
        first = get(engine, "/hostile", mode=mode, tag=tag)
        seen = watch(engine, 2.0, tag=tag)  # the grandchild would write its file after 1 s
        assert not any(s["marker"] for s in seen), "the backgrounded grandchild ran after the callback"
        assert process_of(first["worker"]) not in {process_of(s["worker"]) for s in seen}
    finally:
        Path(f"/tmp/leftover-{tag}").unlink(missing_ok=True)  # the process backend shares the host's /tmp
    assert not Path(f"/tmp/leftover-{tag}").exists()


def test_thread_mutating_state_after_the_callback_is_never_seen_by_a_later_invocation(engine):
    tag = uuid.uuid4().hex[:10]
    first = get(engine, "/hostile", mode="thread-mutate", tag=tag)
    seen = watch(engine, 0.5)
    assert not any(tag in s["mutated"] for s in seen), "a late thread's write was seen by a later invocation"
    assert process_of(first["worker"]) not in {process_of(s["worker"]) for s in seen}
