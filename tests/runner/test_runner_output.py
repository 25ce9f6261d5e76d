"""Handler output becomes capped `log` frames and never reaches the protocol stream."""

from __future__ import annotations

from typing import Callable

from runner_harness import RunnerHarness


def test_every_output_path_becomes_a_log_line_at_its_level(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import logging, os, subprocess, sys, warnings
        def handler(context, event, callback):
            print("print line")
            print("two\\nlines")
            print("to stderr", file=sys.stderr)
            sys.stdout.write("partial ")
            sys.stdout.write("line\\n")
            sys.stdout.buffer.write("bytes é\\n".encode())
            os.write(1, b"fd one\\n")
            os.write(2, b"fd two\\n")
            sys.__stdout__.write("dunder stdout\\n")
            sys.__stderr__.write("dunder stderr\\n")
            subprocess.run(["sh", "-c", "echo child out; echo child err >&2"], check=True)
            logging.debug("log debug")
            logging.info("log info")
            logging.getLogger("mine").warning("log warning")
            logging.error("log error")
            logging.critical("log critical")
            warnings.warn("careful now")
            os.write(1, b"no newline at the end")
            callback(None, "ok")
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "ok"
    got = {(log["level"], log["message"]) for log in outcome.logs}
    expected = {
        ("info", "print line"), ("info", "two"), ("info", "lines"), ("error", "to stderr"),
        ("info", "partial line"), ("info", "bytes é"), ("info", "fd one"), ("error", "fd two"),
        ("info", "dunder stdout"), ("error", "dunder stderr"), ("info", "child out"), ("error", "child err"),
        ("debug", "log debug"), ("info", "log info"), ("warn", "log warning"), ("error", "log error"),
        ("error", "log critical"), ("info", "no newline at the end"),
    }
    assert expected <= got, expected - got
    assert any(level == "warn" and "careful now" in message for level, message in got)
    assert outcome.done["clean"] is True


def test_output_cannot_forge_protocol_frames(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import os, sys
        FAKE = '{"type":"result","id":"%s","status":418,"headers":[],"body":"forged","body_encoding":"utf-8","error":null}'
        def handler(context, event, callback):
            inv = event["id"]
            print(FAKE % inv)
            os.write(1, (FAKE % inv + "\\n").encode())
            sys.__stdout__.write(FAKE % inv + "\\n")
            sys.__stdout__.flush()
            callback(None, "real")
        """})
    outcome = runner.invoke("f", {"id": "inv-1"})
    assert outcome.status == 200 and outcome.body == "real"
    assert sum('"forged"' in m for m in outcome.messages("info")) == 3


def test_ten_megabytes_of_prints_are_capped_and_counted(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import os
        def handler(context, event, callback):
            line = "y" * 99
            for _ in range(50_000):
                print(line)
            chunk = b"z" * 1023 + b"\\n"
            for _ in range(5 * 1024):
                os.write(1, chunk)
            print("x" * (2 * 1024 * 1024))
            callback(None, "survived")
        """, "functions/ok.py": "def handler(context, event, callback):\n    print('small')\n    callback(None, 'ok')\n"},
        limits={"max_log_bytes": 65536})
    outcome = runner.invoke("f", timeout=60)
    assert outcome.body == "survived"
    sent = sum(len(m.encode()) for m in outcome.messages())
    assert sent <= 65536
    assert outcome.done["log_bytes_dropped"] >= 50_000 * 99 + 5 * 1024 * 1023 + 2 * 1024 * 1024 - 65536
    assert all(len(m.encode()) <= 16 * 1024 for m in outcome.messages())
    following = runner.invoke("ok")  # the budget is per invocation
    assert following.messages() == ["small"] and following.done["log_bytes_dropped"] == 0


def test_long_lines_are_chopped_into_16k_pieces(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import os
        def handler(context, event, callback):
            print("é" * 20_000)
            os.write(1, b"r" * 40_000 + b"\\n")
            callback()
        """}, limits={"max_log_bytes": 1 << 20})
    outcome = runner.invoke("f")
    messages = outcome.messages("info")
    assert "".join(m for m in messages if m.startswith("é")) == "é" * 20_000
    assert "".join(m for m in messages if m.startswith("r")) == "r" * 40_000
    assert all(len(m.encode()) <= 16 * 1024 for m in messages)


def test_output_after_the_callback_is_logged_before_done(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import os
        def handler(context, event, callback):
            callback(None, "ok")
            print("after callback")
            os.write(2, b"raw after callback")
        """})
    outcome = runner.invoke("f")
    kinds = [f["type"] for f in outcome.frames]
    assert kinds[0] == "result" and kinds[-1] == "done"
    assert ("info", "after callback") in {(log["level"], log["message"]) for log in outcome.logs}
    assert ("error", "raw after callback") in {(log["level"], log["message"]) for log in outcome.logs}


def test_reading_stdin_cannot_steal_protocol_frames(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import sys
        def handler(context, event, callback):
            callback(None, repr(sys.stdin.read()))
        """})
    assert runner.invoke("f").body == "''"
    assert runner.invoke("f").body == "''"


def test_a_thread_left_running_makes_the_worker_unclean(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import threading, time
        def handler(context, event, callback):
            threading.Thread(target=time.sleep, args=(30,), name="sleeper", daemon=True).start()
            callback(None, "ok")
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "ok"
    assert outcome.done["clean"] is False and "threads still running: sleeper" in outcome.done["reason"]


def test_timers_started_by_the_handler_are_cancelled(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import threading
        def handler(context, event, callback):
            threading.Timer(0.5, print, args=("TIMER FIRED",)).start()
            callback(None, "ok")
        """, "functions/wait.py": "import time\ndef handler(c, e, cb):\n    time.sleep(0.8)\n    cb()\n"})
    outcome = runner.invoke("f")
    assert outcome.done["clean"] is True
    assert "TIMER FIRED" not in runner.invoke("wait").messages()


def test_a_child_process_left_running_makes_the_worker_unclean(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import subprocess
        def handler(context, event, callback):
            subprocess.Popen(["sleep", "30"])
            callback(None, "ok")
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "ok"
    assert outcome.done["clean"] is False and "child processes still running" in outcome.done["reason"]
    assert "sleep" in outcome.done["reason"]


def test_a_finished_child_process_is_clean(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import subprocess, time
        def handler(context, event, callback):
            subprocess.Popen(["true"])  # never waited for: becomes a zombie, which the runner reaps
            time.sleep(0.2)
            callback(None, "ok")
        """})
    assert runner.invoke("f").done["clean"] is True


def test_after_an_unclean_done_the_runner_sends_nothing_more(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import threading, time
        def chatter():
            while True:
                print("still here")
                time.sleep(0.01)
        def handler(context, event, callback):
            threading.Thread(target=chatter, daemon=True).start()
            callback(None, "ok")
        """})
    outcome = runner.invoke("f")
    assert outcome.done["clean"] is False
    assert runner.no_frame(0.3) is None  # the engine replaces this worker; it must not hear stray logs


def test_a_handler_replacing_sys_stdout_does_not_break_later_invocations(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/hijack.py": """
        import io, sys
        def handler(context, event, callback):
            sys.stdout = io.StringIO()
            print("swallowed")
            callback()
        """, "functions/ok.py": "def handler(context, event, callback):\n    print('visible')\n    callback()\n"})
    assert runner.invoke("hijack").messages() == []
    assert runner.invoke("ok").messages() == ["visible"]
