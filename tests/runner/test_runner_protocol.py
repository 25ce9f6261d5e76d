"""The worker protocol end to end: bootstrap, load errors, bad input, ordering (docs/protocol.md)."""

from __future__ import annotations

import json
from typing import Callable

from runner_harness import RunnerHarness

OK = """
def handler(context, event, callback):
    callback(None, "ok")
"""


def test_ready_reports_runtime_pid_and_no_load_errors(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK}, init=False)
    ready = runner.init()
    assert ready["type"] == "ready" and ready["protocol"] == 1 and ready["runtime"] == "python"
    assert ready["runtime_version"].startswith("3.") and isinstance(ready["pid"], int)
    assert ready["load_errors"] == {}
    assert runner.invoke("ok").body == "ok"


def test_load_errors_are_reported_per_function_and_answered_with_500(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({
        "functions/ok.py": OK,
        "functions/syntax.py": "def handler(context, event, callback):\n    x = (\n",
        "functions/imports.py": "import no_such_module_xyz\n",
        "functions/raises.py": "x = 1\nraise RuntimeError('top level boom')\n",
        "functions/exits.py": "import sys\nsys.exit(3)\n",
        "functions/nohandler.py": "def other(context, event, callback):\n    pass\n",
        "functions/notcallable.py": "handler = 5\n",
    }, init=False)
    ready = runner.init()
    errors = ready["load_errors"]
    assert set(errors) == {"syntax", "imports", "raises", "exits", "nohandler", "notcallable"}
    assert errors["syntax"].startswith("functions/syntax.py: SyntaxError:") and "(line 2)" in errors["syntax"]
    assert errors["imports"].startswith("functions/imports.py: ModuleNotFoundError:")
    assert errors["raises"] == "functions/raises.py: RuntimeError: top level boom (line 2)"
    assert errors["exits"].startswith("functions/exits.py: SystemExit: 3")
    assert "no `handler`" in errors["nohandler"]
    for name, message in errors.items():
        outcome = runner.invoke(name)
        assert outcome.status == 500 and outcome.header("Content-Type") == ["application/json; charset=utf-8"]
        body = outcome.json()
        assert body["message"] == message and isinstance(body["name"], str)
        assert outcome.done["clean"] is True
    assert runner.invoke("imports").json()["name"] == "ModuleNotFoundError"
    assert runner.invoke("ok").body == "ok"  # the good function still works
    assert any("top level boom" in log["message"] for log in runner.bootstrap_logs)


def test_bootstrap_output_is_logged_without_an_id_before_ready(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/noisy.py": "import os\nprint('module print')\nos.write(2, b'module fd2\\n')\n"
                          + OK}, init=False)
    runner.init()
    assert [(log["level"], log["message"]) for log in runner.bootstrap_logs] == [
        ("info", "module print"), ("error", "module fd2")]


def test_malformed_init_is_answered_with_init_error_and_the_runner_stays_up(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK}, init=False)
    runner.send(b"this is not json\n")
    assert runner.next_frame()["type"] == "init_error"
    runner.send({"type": "invoke", "id": "x", "function": "ok"})
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "init" in frame["message"]
    runner.send({**runner.init_message, "protocol": 2})
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "protocol" in frame["message"]
    runner.send({**runner.init_message, "limits": {"max_log_bytes": "lots"}})
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "max_log_bytes" in frame["message"]
    runner.send({**runner.init_message, "functions": [{"name": "x"}]})
    assert runner.next_frame()["type"] == "init_error"
    assert runner.init()["type"] == "ready"
    assert runner.invoke("ok").body == "ok"


def test_missing_twilio_package_is_an_init_error(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK}, init=False, python_args=("-S", "-E"))  # no site-packages
    runner.send(runner.init_message)
    frame = runner.next_frame()
    assert frame["type"] == "init_error" and "twilio" in frame["message"]


def test_bad_lines_after_ready_become_error_logs(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK})
    runner.send(b"{broken\n")
    frame = runner.next_frame()
    assert (frame["type"], frame["id"], frame["level"]) == ("log", None, "error")
    runner.send({"type": "bogus"})
    assert runner.next_frame()["level"] == "error"
    runner.send(runner.init_message)
    assert "second" in runner.next_frame()["message"]
    assert runner.invoke("ok").body == "ok"


def test_unknown_function_is_a_500_and_a_clean_done(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK})
    outcome = runner.invoke("missing")
    assert outcome.status == 500 and "missing" in outcome.json()["message"]
    assert outcome.done == {"type": "done", "id": outcome.done["id"], "clean": True, "reason": None,
                            "log_bytes_dropped": 0}


def test_done_and_result_shapes(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK})
    outcome = runner.invoke("ok")
    assert outcome.result == {"type": "result", "id": outcome.result["id"], "status": 200,
                              "headers": [["Content-Type", "text/plain; charset=utf-8"]], "body": "ok",
                              "body_encoding": "utf-8", "error": None}
    assert [f["type"] for f in outcome.frames] == ["result", "done"]


def test_the_runner_writes_no_bytecode_and_exits_on_stdin_eof(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/ok.py": OK, "functions/lib/helper.py": "VALUE = 1\n" + OK})
    runner.invoke("ok")
    assert runner.close() == 0
    assert not list(runner.project.rglob("__pycache__"))


def test_private_functions_load_and_private_names_are_keys(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/secret.private.py": OK})
    assert runner.invoke("secret").body == "ok"


def test_env_never_reaches_os_environ(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/env.py": """
        import os
        def handler(context, event, callback):
            callback(None, {"os": os.environ.get("AUTH_TOKEN"), "ctx": context.AUTH_TOKEN})
        """}, env={"AUTH_TOKEN": "secret-token"})
    assert runner.invoke("env").json() == {"os": None, "ctx": "secret-token"}
    assert json.dumps(runner.init_message["env"]) not in runner.stderr.decode(errors="replace")
