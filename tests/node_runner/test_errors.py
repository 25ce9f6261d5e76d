"""Handler failures become 500s, the first callback wins, and the worker survives all of it."""

from __future__ import annotations

import pytest

JSON = "application/json; charset=utf-8"

HANDLERS = {
    "sync-throw": "exports.handler = () => { throw new RangeError('sync boom'); };",
    "throw-string": "exports.handler = () => { throw 'just a string'; };",
    "async-reject": "exports.handler = async () => { await null; throw new TypeError('async boom'); };",
    "promise-reject": "exports.handler = () => Promise.reject(new SyntaxError('returned promise boom'));",
    "thenable-reject": "exports.handler = () => ({ then(ok, fail) { fail(new Error('thenable boom')); } });",
    "uncaught": "exports.handler = () => { setTimeout(() => { throw new EvalError('uncaught boom'); }, 5); };",
    "unhandled": "exports.handler = () => { setTimeout(() => { Promise.reject(new URIError('unhandled boom')); }, 5); };",
    "unhandled-value": "exports.handler = () => { Promise.reject(42); };",
    "twice": "exports.handler = (c, e, callback) => { callback(null, 'first'); callback(null, 'second'); callback('third'); };",
    "twice-later": """exports.handler = (c, e, callback) => {
  Promise.resolve().then(() => callback(null, 'first'));
  setImmediate(() => callback(null, 'never'));
};""",
    "throw-after": "exports.handler = (c, e, callback) => { callback(null, 'answered'); throw new Error('after the answer'); };",
    "reject-after": "exports.handler = async (c, e, callback) => { callback(null, 'answered'); throw new Error('rejected after'); };",
    "exit": "exports.handler = () => { process.exit(3); };",
    "exit-later": "exports.handler = () => { setTimeout(() => process.exit(0), 5); };",
    "abort": "exports.handler = () => { process.abort(); };",
    "kill-self": "exports.handler = () => { process.kill(process.pid, 'SIGKILL'); };",
    "ok": "exports.handler = (c, e, callback) => callback(null, 'alive');",
    "no-creds": "exports.handler = (context, e, callback) => { context.getTwilioClient(); callback(null, 'unreachable'); };",
    "capture": """exports.handler = (c, e, callback) => {
  process.setUncaughtExceptionCaptureCallback(() => {});
  callback(null, 'captured');
};""",
    "swallow": """exports.handler = (context, e, callback) => {
  process.removeAllListeners('unhandledRejection');
  process.removeAllListeners('uncaughtException');
  setTimeout(() => { throw new Error('still caught'); }, 5);
};""",
}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return {f"functions/{name}.js": code + "\n" for name, code in HANDLERS.items()}


@pytest.fixture
def runner(node_runner, files):
    return node_runner(files)


@pytest.mark.parametrize(("name", "message", "error_name"), [
    ("sync-throw", "sync boom", "RangeError"),
    ("throw-string", "just a string", "Error"),
    ("async-reject", "async boom", "TypeError"),
    ("promise-reject", "returned promise boom", "SyntaxError"),
    ("thenable-reject", "thenable boom", "Error"),
    ("uncaught", "uncaught boom", "EvalError"),
    ("unhandled", "unhandled boom", "URIError"),
    ("unhandled-value", "42", "Error"),
    ("no-creds", "context.getTwilioClient(): ACCOUNT_SID and AUTH_TOKEN must be set in the service's .env", "Error"),
])
def test_failures_are_500_json_and_the_worker_stays_usable(runner, name, message, error_name) -> None:
    out = runner.invoke(name)
    assert (out.status, out.header("Content-Type")) == (500, JSON)
    assert out.json() == {"message": message, "name": error_name}
    assert out.messages("error"), "the failure is logged"
    assert out.done["clean"] is True
    assert runner.invoke("ok").text == "alive"


def test_failure_stack_in_body_only_in_dev_mode(node_runner, files) -> None:
    body = node_runner(files, dev_mode=True).invoke("sync-throw").json()
    assert body["stack"].startswith("RangeError: sync boom\n") and "sync-throw.js" in body["stack"]


def test_first_callback_wins_and_later_calls_are_logged(runner) -> None:
    out = runner.invoke("twice")
    assert (out.status, out.text) == (200, "first")
    warnings = out.messages("warn")
    assert len(warnings) == 2 and all("called again" in w for w in warnings)
    assert out.done["clean"] is True


def test_first_callback_wins_across_turns(runner) -> None:
    out = runner.invoke("twice-later")
    assert out.text == "first"
    assert runner.invoke("ok").text == "alive"


@pytest.mark.parametrize(("name", "logged"), [("throw-after", "after the answer"), ("reject-after", "rejected after")])
def test_errors_after_the_callback_are_logged_not_answered(runner, name, logged) -> None:
    out = runner.invoke(name)
    assert (out.status, out.text) == (200, "answered")
    assert any(logged in m and "after the callback" in m for m in out.messages("error"))


@pytest.mark.parametrize(("name", "what"), [
    ("exit", "process.exit(3)"), ("exit-later", "process.exit(0)"), ("abort", "process.abort()"),
    ("kill-self", "process.kill("),
])
def test_ending_the_process_is_a_500_and_the_worker_survives(runner, name, what) -> None:
    out = runner.invoke(name)
    assert out.status == 500
    body = out.json()
    assert what in body["message"] and "callback()" in body["message"]
    assert runner.invoke("ok").text == "alive"
    assert runner.proc.poll() is None


def test_removing_the_runner_listeners_does_not_crash_the_worker(runner) -> None:
    out = runner.invoke("swallow")
    assert out.status == 500 and out.json()["message"] == "still caught"
    assert runner.invoke("ok").text == "alive"
    assert runner.invoke("unhandled").json()["name"] == "URIError"


def test_the_domain_module_works(node_runner, files) -> None:
    """require('domain') works (the runner does not use setUncaughtExceptionCaptureCallback)."""
    runner = node_runner({**files, "functions/domain.js": """const domain = require('domain');
exports.handler = (c, e, callback) => {
  const d = domain.create();
  d.on('error', (err) => callback(null, 'domain caught: ' + err.message));
  d.run(() => setTimeout(() => { throw new Error('thrown in a domain'); }, 1));
};
"""})
    out = runner.invoke("domain")
    assert (out.status, out.text) == (200, "domain caught: thrown in a domain")
    assert runner.invoke("uncaught").json()["name"] == "EvalError"
    assert runner.invoke("swallow").json()["message"] == "still caught"
    assert runner.invoke("ok").text == "alive"


def test_a_capture_callback_set_by_a_handler_is_reset(runner) -> None:
    assert runner.invoke("capture").text == "captured"
    out = runner.invoke("uncaught")
    assert (out.status, out.json()["name"]) == (500, "EvalError")
