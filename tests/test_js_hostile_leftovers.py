"""Attacks on "nothing the handler scheduled runs after the callback" with the Node.js runner, end
to end: real engine, real containers, over HTTP (issue 13 items 6 and 7).

One worker only (`min_idle=1`, `max_workers=1`), so a later request lands on the same worker unless
the runner reported it dirty and the engine replaced it. Each attack leaves work that would write
a marker file in the worker's /tmp, record its tag in module state and print `LEFTOVER FIRED <tag>`
after the callback; none of that may ever be seen. Also: raw writes to fd 2 are log lines of the
invocation that made them, with its id.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

JS_LEFTOVERS = Path(__file__).resolve().parent / "projects" / "js-leftovers"
DELAY_S = 1.0  # the leftover work would fire this long after it was scheduled


@pytest.fixture(scope="module")
def engine(module_engine_factory, docker_backend, request):
    request.getfixturevalue("docker_available")
    return module_engine_factory(JS_LEFTOVERS, backend=docker_backend, config={"min_idle": 1, "max_workers": 1})


def get(engine, **params: str) -> tuple[dict, str]:
    with engine.client() as client:
        response = client.get("/leftover", params=params)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["X-Request-Id"]


def records(engine) -> list[dict]:
    return [json.loads(line) for line in engine.logs().splitlines() if line.startswith("{")]


def assert_never_fired(engine, tag: str, scheduled_at: float) -> None:
    remaining = scheduled_at + DELAY_S + 1.0 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert f"LEFTOVER FIRED {tag}" not in engine.logs(), f"leftover work {tag} ran after the callback"


def assert_replaced_and_never_ran(engine, mode: str) -> None:
    tag = uuid.uuid4().hex[:10]
    scheduled_at = time.monotonic()
    first, _ = get(engine, mode=mode, tag=tag, delay=str(DELAY_S))
    later, _ = get(engine, mode="sleep-then-state", seconds=str(DELAY_S + 0.5))
    assert later["worker"] != first["worker"], f"the worker {mode} left work in was reused"
    for _ in range(3):
        state, _ = get(engine, mode="state")
        assert not [m for m in state["markers"] if tag in m], state
        assert tag not in state["fired"], state
    assert_never_fired(engine, tag, scheduled_at)


def test_handler_orphaned_grandchild_cannot_run_into_a_later_invocation(engine):
    """`exec('(sleep 1; ...) &')`: the shell exits at once, the orphaned subshell is re-parented to
    the container's init. The runner finds it in its PID namespace, kills it, reports dirty."""
    assert_replaced_and_never_ran(engine, "grandchild")


def test_handler_worker_thread_cannot_run_into_a_later_invocation(engine):
    """A worker_threads Worker running at the callback is terminated and the worker replaced (it
    used to keep writing files through the next three invocations of the reused worker)."""
    assert_replaced_and_never_ran(engine, "worker-thread")


def test_handler_finalization_callback_cannot_run_in_a_later_invocation(engine):
    """Targets registered in one invocation, collected in the next on the same worker: the
    FinalizationRegistry callbacks never run, and the worker stays clean (it is reused)."""
    tag = uuid.uuid4().hex[:10]
    first, _ = get(engine, mode="finalizer", tag=tag)
    later, _ = get(engine, mode="collect-then-state")
    assert later["worker"] == first["worker"], "a worker whose finalizers were neutralised is reused"
    assert tag not in later["fired"], later
    time.sleep(0.3)
    assert f"LEFTOVER FIRED {tag}" not in engine.logs()


def test_raw_writes_to_fd_2_are_log_lines_of_their_invocation(engine):
    tag = uuid.uuid4().hex[:10]
    _, invocation_id = get(engine, mode="stderr", tag=tag)
    wanted = {f"fd2 {tag}", f"child-stderr {tag}"}
    deadline = time.monotonic() + 10
    while True:
        lines = [r for r in records(engine) if r.get("event") == "handler_log" and any(w in r.get("message", "") for w in wanted)]
        if {r["message"] for r in lines} >= wanted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {r["message"] for r in lines} == wanted, lines
    for record in lines:
        assert record["invocation_id"] == invocation_id, record
        assert record["stream_level"] == "error", record
    stderr_lines = [r for r in records(engine) if r.get("event") == "worker_stderr" and tag in json.dumps(r)]
    assert stderr_lines == [], "fd 2 of the handler is not the runner's crash output"
