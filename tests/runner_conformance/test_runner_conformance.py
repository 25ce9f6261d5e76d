"""The Python and the Node.js runner answer the same protocol frames the same way.

Every case runs against both runners (the `language` parameter), with one handler per language
doing the same thing, and checks frames only: the runners cannot drift apart again without one
side failing here. Covered: invocation ids, capture of raw fds 1/2 and of a child's inherited
output, muting after a dirty verdict, the verdicts for work left behind that both languages can
leave (timers, child processes, orphaned grandchildren, threads / worker threads), malformed
frames, and the frame and response size limits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import kill_session

def invoke_frames(harness, invocation_id: Any, function: str, event: dict | None = None,
                  timeout: float = 15) -> list[dict]:
    """Send one invoke with exactly this id; frames up to its `done`."""
    harness.send({"type": "invoke", "id": invocation_id, "function": function,
                  "event": event or {"request": {"headers": {}, "cookies": {}}}, "context": {"PATH": f"/{function}"}})
    frames = []
    while True:
        frame = harness.next_frame(timeout)
        frames.append(frame)
        if frame["type"] == "done":
            return frames


def logs(frames: list[dict]) -> list[tuple[Any, str, str]]:
    return [(f["id"], f["level"], f["message"]) for f in frames if f["type"] == "log"]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


HELLO = {
    "python": """
        def handler(context, event, callback):
            print("hello")
            callback(None, "ok")
    """,
    "node": """
        exports.handler = (context, event, callback) => {
          console.log('hello');
          callback(null, 'ok');
        };
    """,
}


# --- invocation ids ------------------------------------------------------------------------------


def test_a_string_id_is_echoed_in_every_frame_of_its_invocation(conformant_runner):
    runner = conformant_runner({"hello": HELLO})
    frames = invoke_frames(runner, "01J-any string ✓", "hello")
    assert [f["type"] for f in frames] == ["log", "result", "done"]
    assert {f["id"] for f in frames} == {"01J-any string ✓"}


@pytest.mark.parametrize("bad_id", [7, 0, "", None, True, ["a"], {"a": 1}], ids=repr)
def test_an_invoke_whose_id_is_not_a_non_empty_string_is_ignored_with_an_error_log(conformant_runner, bad_id):
    runner = conformant_runner({"hello": HELLO})
    message = {"type": "invoke", "function": "hello", "event": {}, "context": {}}
    if bad_id is not None:
        message["id"] = bad_id
    runner.send(message)
    frame = runner.next_frame()
    assert frame["type"] == "log" and frame["level"] == "error" and frame["id"] is None, frame
    assert "`id`" in frame["message"] and "non-empty string" in frame["message"], frame
    assert runner.no_frame(0.3) is None, "nothing else: no result, no done"
    frames = invoke_frames(runner, "after", "hello")
    assert [f["type"] for f in frames] == ["log", "result", "done"] and frames[-1]["clean"] is True


# --- output capture ------------------------------------------------------------------------------

RAW_OUTPUT = {
    "python": """
        import os
        import subprocess

        def handler(context, event, callback):
            os.write(1, b"raw fd1\\n")
            os.write(2, b"raw fd2\\n")
            subprocess.run(["sh", "-c", "echo child out; echo child err >&2"], check=True)
            callback(None, "ok")
    """,
    "node": """
        const fs = require('fs');
        const { execFileSync } = require('child_process');
        exports.handler = (context, event, callback) => {
          fs.writeSync(1, 'raw fd1\\n');
          fs.writeSync(2, 'raw fd2\\n');
          execFileSync('sh', ['-c', 'echo child out; echo child err >&2'], { stdio: 'inherit' });
          callback(null, 'ok');
        };
    """,
}


def test_raw_writes_to_fds_1_and_2_and_a_childs_inherited_output_are_log_lines_of_the_invocation(conformant_runner):
    runner = conformant_runner({"raw": RAW_OUTPUT})
    frames = invoke_frames(runner, "raw-1", "raw")
    lines = logs(frames)
    for expected in [("raw-1", "info", "raw fd1"), ("raw-1", "error", "raw fd2"),
                     ("raw-1", "info", "child out"), ("raw-1", "error", "child err")]:
        assert expected in lines, lines
    assert frames[-1]["clean"] is True
    assert runner.no_frame(0.3) is None, "nothing logged after done"
    assert b"raw fd2" not in runner.stderr and b"child err" not in runner.stderr, "fd 2 is the handler's, not the runner's"


# --- what an invocation leaves behind -----------------------------------------------------------

TIMER = {
    "python": """
        import threading

        def handler(context, event, callback):
            threading.Timer(0.4, lambda: print("LEFTOVER timer fired")).start()
            callback(None, "ok")
    """,
    "node": """
        exports.handler = (context, event, callback) => {
          setTimeout(() => console.log('LEFTOVER timer fired'), 400);
          callback(null, 'ok');
        };
    """,
}


def test_a_pending_timer_is_cancelled_and_the_worker_stays_clean(conformant_runner):
    runner = conformant_runner({"timer": TIMER, "hello": HELLO})
    assert invoke_frames(runner, "t-1", "timer")[-1]["clean"] is True
    time.sleep(0.7)
    frames = invoke_frames(runner, "t-2", "hello")
    assert not [f for f in frames if "LEFTOVER" in f.get("message", "")]
    assert runner.no_frame(0.2) is None


CHILD = {
    "python": """
        import subprocess

        def handler(context, event, callback):
            child = subprocess.Popen(["sleep", "30"])
            callback(None, str(child.pid))
    """,
    "node": """
        const { spawn } = require('child_process');
        exports.handler = (context, event, callback) => {
          const child = spawn('sleep', ['30']);
          callback(null, String(child.pid));
        };
    """,
}


def test_a_child_process_running_at_the_callback_is_killed_or_makes_the_worker_dirty(conformant_runner):
    runner = conformant_runner({"child": CHILD})
    frames = invoke_frames(runner, "c-1", "child")
    pid = int(frames[-2]["body"])
    done = frames[-1]
    assert done["clean"] is False or not alive(pid), (done, "a clean verdict with the child still running")


GRANDCHILD = {
    "python": """
        import subprocess

        def handler(context, event, callback):
            # the shell exits at once; its background subshell is orphaned
            subprocess.run("(sleep 1; echo late > " + event["file"] + ") > /dev/null 2>&1 &", shell=True, check=True)
            callback(None, "ok")
    """,
    "node": """
        const { execSync } = require('child_process');
        exports.handler = (context, event, callback) => {
          // the shell exits at once; its background subshell is orphaned
          execSync('(sleep 1; echo late > ' + event.file + ') > /dev/null 2>&1 &');
          callback(null, 'ok');
        };
    """,
}


def test_an_orphaned_grandchild_makes_the_worker_dirty_and_never_runs_on(conformant_runner, language, tmp_path):
    runner = conformant_runner({"grandchild": GRANDCHILD})
    marker = tmp_path / "late.txt"
    done = invoke_frames(runner, "g-1", "grandchild", {"file": str(marker)})[-1]
    kill_session(runner)  # what the engine does with a dirty worker
    time.sleep(1.5)
    assert done["clean"] is False, done
    assert not marker.exists(), "the orphan ran on after the worker was replaced"


THREAD = {
    "python": """
        import threading
        import time

        def handler(context, event, callback):
            threading.Thread(target=time.sleep, args=(float(event["seconds"]),)).start()
            callback(None, "ok")
    """,
    "node": """
        const { Worker } = require('worker_threads');
        exports.handler = (context, event, callback) => {
          const ms = Number(event.seconds) * 1000;
          const worker = new Worker(`setTimeout(() => {}, ${ms})`, { eval: true });
          worker.on('online', () => callback(null, 'ok'));
        };
    """,
}


@pytest.mark.parametrize("seconds", [3.0, 0.1], ids=["long", "short"])
def test_a_thread_running_at_the_callback_makes_the_worker_dirty(conformant_runner, language, seconds):
    """No grace: a thread (a worker thread in Node) still running when the callback is called could
    have changed anything in the process, whether or not it ends a moment later."""
    runner = conformant_runner({"thread": THREAD})
    done = invoke_frames(runner, "th-1", "thread", {"seconds": seconds})[-1]
    assert done["clean"] is False, done
    assert done["reason"], done


# --- muting after a dirty verdict ---------------------------------------------------------------

DIRTY_THEN_CHATTY = {
    "python": """
        import os
        import threading
        import time

        def chatter():
            for _ in range(20):
                time.sleep(0.05)
                print("LEFTOVER print")
                os.write(2, b"LEFTOVER fd2\\n")

        def handler(context, event, callback):
            threading.Thread(target=chatter).start()
            callback(None, "ok")
    """,
    "node": """
        const { Worker } = require('worker_threads');
        exports.handler = (context, event, callback) => {
          const code = "setInterval(() => { console.log('LEFTOVER print'); require('fs').writeSync(2, 'LEFTOVER fd2\\\\n'); }, 50)";
          const worker = new Worker(code, { eval: true });
          worker.on('online', () => callback(null, 'ok'));
        };
    """,
}


def test_after_a_dirty_done_nothing_is_logged_any_more(conformant_runner):
    runner = conformant_runner({"dirty": DIRTY_THEN_CHATTY, "hello": HELLO})
    frames = invoke_frames(runner, "d-1", "dirty")
    assert frames[-1]["clean"] is False, frames[-1]
    time.sleep(0.4)
    # The engine replaces the worker; were it to send another invoke, that one is muted too.
    later = invoke_frames(runner, "d-2", "hello")
    assert [f["type"] for f in later] == ["result", "done"], later
    time.sleep(0.3)
    stray = [f for f in runner.frames.queue if f is not None]
    assert stray == [], stray


# --- malformed frames ---------------------------------------------------------------------------

BAD_LINES = [b"not json\n", b"[1, 2]\n", b'{"no_type": 1}\n', b'{"type": 3}\n', b"\xff\xfe\n", b'"text"\n']


@pytest.mark.parametrize("line", BAD_LINES, ids=repr)
def test_a_malformed_line_before_init_is_answered_with_init_error_and_init_still_works(conformant_runner, line):
    runner = conformant_runner({"hello": HELLO}, init=False)
    runner.send(line)
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "malformed" in frame["message"], frame
    ready = runner.init()
    assert ready["type"] == "ready", ready
    assert invoke_frames(runner, "b-1", "hello")[-1]["clean"] is True


@pytest.mark.parametrize("line", [*BAD_LINES, b'{"type": "bogus"}\n', b'{"type": "init", "protocol": 1}\n'], ids=repr)
def test_a_malformed_or_unexpected_line_after_init_is_logged_and_the_runner_keeps_serving(conformant_runner, line):
    runner = conformant_runner({"hello": HELLO})
    runner.send(line)
    frame = runner.next_frame()
    assert frame["type"] == "log" and frame["level"] == "error" and frame["id"] is None, frame
    assert frame["message"].startswith("runner: "), frame
    frames = invoke_frames(runner, "b-2", "hello")
    assert [f["type"] for f in frames] == ["log", "result", "done"]


def test_invoke_before_init_is_an_init_error(conformant_runner):
    runner = conformant_runner({"hello": HELLO}, init=False)
    runner.send({"type": "invoke", "id": "early", "function": "hello", "event": {}, "context": {}})
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "`init` first" in frame["message"], frame


def test_a_protocol_version_mismatch_is_an_init_error(conformant_runner):
    runner = conformant_runner({"hello": HELLO}, init=False)
    runner.send({**runner.init_message, "protocol": 2})
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "protocol version" in frame["message"], frame


# --- size limits ---------------------------------------------------------------------------------

LONG_LINE = {
    "python": """
        def handler(context, event, callback):
            print("é" * 20000)
            callback(None, "x" * int(event.get("n", 0)))
    """,
    "node": """
        exports.handler = (context, event, callback) => {
          console.log('é'.repeat(20000));
          callback(null, 'x'.repeat(Number(event.n || 0)));
        };
    """,
}


def test_every_frame_stays_under_a_small_max_frame_bytes(conformant_runner):
    runner = conformant_runner({"long": LONG_LINE}, limits={"max_frame_bytes": 4096, "max_log_bytes": 1 << 20})
    frames = invoke_frames(runner, "s-1", "long")
    assert "".join(m for _, _, m in logs(frames)) == "é" * 20000
    assert all(len(json.dumps(f, ensure_ascii=False).encode()) + 1 <= 4096 for f in frames)
    assert frames[-1]["clean"] is True


def test_a_reply_over_max_response_bytes_is_reported_as_too_large(conformant_runner):
    runner = conformant_runner({"long": LONG_LINE}, limits={"max_response_bytes": 1000})
    frames = invoke_frames(runner, "s-2", "long", {"n": 1001})
    result = next(f for f in frames if f["type"] == "result")
    assert result["error"] == "response_too_large" and result["size"] == 1001 and result["body"] == "", result
    assert result["status"] == 502


def test_the_log_budget_is_per_invocation_and_the_rest_is_counted(conformant_runner):
    runner = conformant_runner({"long": LONG_LINE}, limits={"max_log_bytes": 1000})
    frames = invoke_frames(runner, "s-3", "long")
    sent = sum(len(m.encode()) for _, _, m in logs(frames))
    assert sent <= 1000
    assert frames[-1]["log_bytes_dropped"] == 40000 - sent, frames[-1]


BIG_CHILD_OUTPUT = {
    "python": """
        import subprocess

        def handler(context, event, callback):
            subprocess.run(["sh", "-c", "head -c 200000 /dev/zero | tr '\\\\0' x >&2; echo >&2; echo tail-line"], check=True)
            callback(None, "ok")
    """,
    "node": """
        const { spawn } = require('child_process');
        exports.handler = (context, event, callback) => {
          const child = spawn('sh', ['-c', "head -c 200000 /dev/zero | tr '\\\\0' x >&2; echo >&2; echo tail-line"], { stdio: 'inherit' });
          child.on('exit', () => callback(null, 'ok'));
        };
    """,
}


def test_a_childs_output_larger_than_a_pipe_is_logged_in_full_before_done(conformant_runner):
    runner = conformant_runner({"big": BIG_CHILD_OUTPUT}, limits={"max_log_bytes": 1 << 20})
    frames = invoke_frames(runner, "big-1", "big")
    lines = logs(frames)
    assert "".join(m for _, level, m in lines if level == "error") == "x" * 200000
    assert ("big-1", "info", "tail-line") in lines
    assert {i for i, _, _ in lines} == {"big-1"}
