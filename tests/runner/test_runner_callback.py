"""Every row of the callback table and the Twilio.Response rules, through the real runner."""

from __future__ import annotations

import base64
import time
from typing import Callable

import pytest
from runner_harness import RunnerHarness

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

CALLS = {
    "none": "callback()",
    "null": "callback(None)",
    "null_null": "callback(None, None)",
    "text": 'callback(None, "This is fine")',
    "dict": 'callback(None, {"result": "winner winner!", "é": [1, 2.5, None]})',
    "list": "callback(None, [1, 'a'])",
    "bool": "callback(None, True)",
    "number": "callback(None, 42)",
    "float_nan": "callback(None, [float('nan')])",
    "twiml_messaging": "t = Twilio.twiml.MessagingResponse(); t.message('Hello, World!'); callback(None, t)",
    "twiml_voice": "t = Twilio.twiml.VoiceResponse(); t.say('hi'); callback(None, t)",
    "twiml_fax": "t = Twilio.twiml.FaxResponse(); t.receive(); callback(None, t)",
    "bytes": "callback(None, bytes(range(256)))",
    "err_text": 'callback("Something went very, very wrong.")',
    "err_exception": 'callback(ValueError("bad value"))',
    "err_dict": 'callback({"code": 42})',
    "err_empty_dict": "callback({})",
    "err_number": "callback(7)",
    "falsy_zero": 'callback(0, "zero is falsy")',
    "falsy_empty": 'callback("", "empty is falsy")',
    "unserialisable": "callback(None, {1, 2})",
    "raises": "raise KeyError('nope')",
    "exits": "import sys; sys.exit(4)",
    "keyboard": "raise KeyboardInterrupt()",
}


@pytest.fixture(scope="module")
def runner(module_runner: Callable[..., RunnerHarness]) -> RunnerHarness:
    """One warm runner answers every row, as a pooled worker would."""
    files = {f"functions/{name}.py": f"def handler(context, event, callback):\n    {code}\n"
             for name, code in CALLS.items()}
    return module_runner(files)


@pytest.mark.parametrize("name", ["none", "null", "null_null"])
def test_no_response_is_200_empty_without_content_type(runner: RunnerHarness, name: str) -> None:
    outcome = runner.invoke(name)
    assert (outcome.status, outcome.headers, outcome.body) == (200, [], "")
    assert outcome.done["clean"] is True


@pytest.mark.parametrize("name, content_type, body", [
    ("text", TEXT, "This is fine"),
    ("dict", JSON, '{"result":"winner winner!","é":[1,2.5,null]}'),
    ("list", JSON, '[1,"a"]'),
    ("bool", JSON, "true"),
    ("number", JSON, "42"),
    ("float_nan", JSON, "[null]"),
    ("twiml_messaging", "text/xml; charset=utf-8",
     '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Hello, World!</Message></Response>'),
    ("twiml_voice", "text/xml; charset=utf-8", '<?xml version="1.0" encoding="UTF-8"?><Response><Say>hi</Say></Response>'),
    ("twiml_fax", "text/xml; charset=utf-8", '<?xml version="1.0" encoding="UTF-8"?><Response><Receive /></Response>'),
    ("falsy_zero", TEXT, "zero is falsy"),
    ("falsy_empty", TEXT, "empty is falsy"),
])
def test_success_rows(runner: RunnerHarness, name: str, content_type: str, body: str) -> None:
    outcome = runner.invoke(name)
    assert (outcome.status, outcome.header("Content-Type"), outcome.body) == (200, [content_type], body)


def test_bytes_round_trip_base64(runner: RunnerHarness) -> None:
    outcome = runner.invoke("bytes")
    assert outcome.status == 200 and outcome.header("Content-Type") == ["application/octet-stream"]
    assert outcome.result["body_encoding"] == "base64"
    assert base64.b64decode(outcome.result["body"]) == bytes(range(256))


@pytest.mark.parametrize("name, content_type, body", [
    ("err_text", TEXT, "Something went very, very wrong."),
    ("err_exception", JSON, '{"message":"bad value","name":"ValueError"}'),
    ("err_dict", JSON, '{"code":42}'),
    ("err_empty_dict", JSON, "{}"),
    ("err_number", JSON, "7"),
])
def test_error_rows_are_500(runner: RunnerHarness, name: str, content_type: str, body: str) -> None:
    outcome = runner.invoke(name)
    assert (outcome.status, outcome.header("Content-Type"), outcome.body) == (500, [content_type], body)


def test_error_stack_goes_to_the_logs_not_the_body(runner: RunnerHarness) -> None:
    outcome = runner.invoke("raises")
    assert outcome.status == 500 and outcome.json() == {"message": "'nope'", "name": "KeyError"}
    errors = "\n".join(outcome.messages("error"))
    assert "Traceback" in errors and "KeyError: 'nope'" in errors and "functions_runtime" not in errors
    assert outcome.done["clean"] is True


@pytest.mark.parametrize("name, error_name", [("exits", "SystemExit"), ("keyboard", "KeyboardInterrupt")])
def test_sys_exit_and_keyboard_interrupt_in_a_handler_are_500s(runner: RunnerHarness, name: str,
                                                              error_name: str) -> None:
    outcome = runner.invoke(name)
    assert outcome.status == 500 and outcome.json()["name"] == error_name
    assert runner.invoke("text").body == "This is fine"  # the worker survives


def test_unserialisable_response_is_500_naming_the_type(runner: RunnerHarness) -> None:
    outcome = runner.invoke("unserialisable")
    assert outcome.status == 500 and "set" in outcome.json()["message"]


def test_dev_mode_puts_the_stack_in_the_body(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": "def handler(context, event, callback):\n    raise ValueError('x')\n"},
                         dev_mode=True)
    body = runner.invoke("f").json()
    assert body["name"] == "ValueError" and "Traceback" in body["stack"] and "f.py" in body["stack"]


def test_first_callback_wins_and_later_calls_are_logged(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/twice.py": """
        def handler(context, event, callback):
            callback(None, "first")
            callback(None, "second")
            callback("error too")
        """})
    outcome = runner.invoke("twice")
    assert outcome.body == "first"
    assert len([m for m in outcome.messages("warn") if "only the first call counts" in m]) == 2
    assert [f["type"] for f in outcome.frames].count("result") == 1


def test_raise_after_callback_keeps_the_answer_and_logs_the_error(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            callback(None, "answered")
            raise RuntimeError("late failure")
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "answered" and any("late failure" in m for m in outcome.messages("error"))


def test_callback_from_another_thread_after_handler_returns(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import threading, time
        def handler(context, event, callback):
            def later():
                time.sleep(0.1)
                callback(None, {"from": "thread"})
            threading.Thread(target=later).start()
        """})
    outcome = runner.invoke("f")
    assert outcome.json() == {"from": "thread"} and outcome.done["clean"] is True


def test_uncaught_exception_in_a_thread_before_callback_is_a_500(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import threading
        def handler(context, event, callback):
            def boom():
                raise LookupError("thread boom")
            threading.Thread(target=boom, name="worker").start()
        """})
    outcome = runner.invoke("f")
    assert outcome.status == 500 and outcome.json() == {"message": "thread boom", "name": "LookupError"}
    assert any("worker" in m for m in outcome.messages("error"))


def test_twilio_response_end_to_end(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            response = Twilio.Response({"statusCode": 201})
            (response.appendHeader("X-Multi", "a").append_header("x-multi", ["b", 3])
                .setCookie("session", "abc", ["Path=/", "HttpOnly"]).set_cookie("theme", "dark")
                .removeCookie("theme").setBody({"everything": "is alright"}))
            callback(None, response)
        """, "functions/redirect.py": """
        def handler(context, event, callback):
            callback(None, Twilio.Response().setStatusCode(301).appendHeader("Location", "https://twilio.com"))
        """, "functions/headers.py": """
        def handler(context, event, callback):
            r = Twilio.Response().append_header("Old", "x").set_cookie("gone", "1")
            r.setHeaders({"Access-Control-Allow-Origin": "example.com", "Content-Type": "text/csv"})
            callback(None, r.setBody("a,b"))
        """, "functions/binary.py": """
        def handler(context, event, callback):
            callback(None, Twilio.Response(body=b"\\x89PNG").append_header("Content-Type", "image/png"))
        """, "functions/bad_header.py": """
        def handler(context, event, callback):
            Twilio.Response().appendHeader("X", {"not": "allowed"})
        """})
    outcome = runner.invoke("f")
    assert outcome.status == 201
    assert outcome.headers == [["X-Multi", "a"], ["X-Multi", "b"], ["X-Multi", "3"],
                               ["Set-Cookie", "session=abc;Path=/;HttpOnly"], ["Set-Cookie", "theme=;Max-Age=0"],
                               ["Content-Type", "application/json"]]
    assert outcome.json() == {"everything": "is alright"}
    outcome = runner.invoke("redirect")
    assert (outcome.status, outcome.headers, outcome.body) == (301, [["Location", "https://twilio.com"]], "")
    outcome = runner.invoke("headers")
    assert outcome.headers == [["Access-Control-Allow-Origin", "example.com"], ["Content-Type", "text/csv"]]
    assert outcome.body == "a,b"
    outcome = runner.invoke("binary")
    assert outcome.result["body_encoding"] == "base64" and base64.b64decode(outcome.result["body"]) == b"\x89PNG"
    assert outcome.header("Content-Type") == ["image/png"]
    outcome = runner.invoke("bad_header")
    assert outcome.status == 500 and outcome.json()["name"] == "TypeError"


def test_response_too_large(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/big.py": """
        def handler(context, event, callback):
            callback(None, "x" * (event["size"]))
        """}, limits={"max_response_bytes": 1000})
    outcome = runner.invoke("big", {"size": 1001})
    assert outcome.result["error"] == "response_too_large" and outcome.result["size"] == 1001
    assert "body" not in outcome.result or not outcome.result["body"]
    assert outcome.done["clean"] is True
    assert runner.invoke("big", {"size": 1000}).body == "x" * 1000


def test_default_body_limit_allows_4_mib_of_escaped_text_within_the_frame(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/big.py": """
        def handler(context, event, callback):
            callback(None, "\\x01" * (4 * 1024 * 1024))
        """})
    outcome = runner.invoke("big")
    assert outcome.result["body_encoding"] == "base64"
    assert base64.b64decode(outcome.result["body"]) == b"\x01" * (4 * 1024 * 1024)


def test_concurrent_callbacks_produce_exactly_one_result(make_runner: Callable[..., RunnerHarness]) -> None:
    files = {"functions/f.py": """
        import threading
        def handler(context, event, callback):
            gate = threading.Barrier(20)
            def call(i):
                gate.wait()
                callback(None, str(i))
            threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        """}
    for _ in range(3):  # a fresh worker each time, as the engine replaces an unclean one
        outcome = make_runner(files).invoke("f")
        assert [f["type"] for f in outcome.frames].count("result") == 1
        assert outcome.body.isdigit() and len(outcome.messages("warn")) == 19
        # The 19 late callers were running handler code when the first call answered.
        assert outcome.done["clean"] is False and "threads still running" in outcome.done["reason"]


def test_no_callback_means_no_result_the_engine_deadline_decides(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": "def handler(context, event, callback):\n    pass\n"})
    runner.send({"type": "invoke", "id": "x", "function": "f", "event": {}, "context": {}})
    assert runner.no_frame(0.5) is None
    runner.proc.kill()


def test_small_frame_limit_is_respected_for_logs_and_results(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            print("\\x01" * 5000)
            callback(None, "\\x02" * event["n"])
        """}, limits={"max_frame_bytes": 4096, "max_response_bytes": 100_000, "max_log_bytes": 100_000})
    outcome = runner.invoke("f", {"n": 1000})  # 6000 bytes escaped: sent as base64 instead
    assert outcome.result["body_encoding"] == "base64"
    assert base64.b64decode(outcome.result["body"]) == b"\x02" * 1000
    assert "".join(outcome.messages("info")) == "\x01" * 5000
    outcome = runner.invoke("f", {"n": 5000})  # does not fit even as base64
    assert outcome.result["error"] == "response_too_large"


def _frame_times(runner: RunnerHarness, function: str) -> dict[str, float]:
    """When `result` and `done` of one invocation arrived, in seconds after the invoke was sent."""
    runner.send({"type": "invoke", "id": "timed", "function": function,
                 "event": {"request": {"headers": {}, "cookies": {}}}, "context": {"PATH": f"/{function}"}})
    started, seen = time.monotonic(), {}
    while "done" not in seen:
        frame = runner.next_frame()
        if frame["type"] in ("result", "done"):
            seen[frame["type"]] = time.monotonic() - started
    return seen


def test_the_reply_is_not_held_while_code_after_the_callback_runs(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import time
        def handler(context, event, callback):
            callback(None, "ok")
            time.sleep(1.5)
        """})
    seen = _frame_times(runner, "f")
    assert seen["result"] < 1.0 <= seen["done"], seen


def test_a_tail_callback_with_a_thread_left_running_still_answers_before_the_clean_up_wait(
        make_runner: Callable[..., RunnerHarness]) -> None:
    # A thread that runs no handler code (it waits inside threading itself) gets the grace period
    # to end before it counts as unclean; the reply must not wait for that grace.
    runner = make_runner({"functions/f.py": """
        import threading
        def handler(context, event, callback):
            threading.Thread(target=threading.Event().wait, daemon=True).start()
            return callback(None, "ok")
        """})
    seen = _frame_times(runner, "f")
    assert seen["done"] - seen["result"] >= 0.1, seen  # the result did not wait for the threads' grace period
