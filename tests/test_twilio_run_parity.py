"""One JS project (tests/projects/js-parity), served by this engine and by Twilio's own dev server.

`twilio-run` (the local emulator behind `twilio serverless:start`) with `@twilio/runtime-handler`
(the runtime a deployed service pins in its package.json) is installed from npm once into
`engine.pydeps.cache_root()/twilio-run` and started on 127.0.0.1 in its `--fork-process=false` mode
(handlers run inside the dev server's own process, as they do in a warm hosted worker). It never
reaches past loopback: a preloaded module (`LOOPBACK_ONLY`) makes it listen on 127.0.0.1 only and
refuses any connection to another host; its environment is scrubbed (no credentials, `CI=true`,
`NO_UPDATE_NOTIFIER=1`, a throwaway HOME). twilio-run 5.0.1 has no telemetry or update check of
its own.

Where the contract and the dev server agree, status, Content-Type and body are identical
(`test_same_reply_as_twilio_run`). Where behavior.md deliberately differs ("where the emulator has a
known bug, we do not copy it"; the hosted service wins), the tests below assert our contract and
record what twilio-run does:

- error bodies: `callback("text")` is `text/plain` here, `text/html` there; an Error (passed to the
  callback or thrown) is `{"message","name"}` here (stack only in the logs or in dev mode), with its
  `stack` there (or an HTML page for a browser User-Agent).
- `Twilio.Response` bodies without a Content-Type: a string is `text/plain; charset=utf-8` here,
  `text/html; charset=utf-8` there; an object is `application/json` here, `application/json;
  charset=utf-8` there. A Content-Type the handler set is sent as set here; express appends a
  charset to it there.
- `callback(null, 42)`: JSON `42` here; express takes the number for a status code there (500).
- a header value with CR/LF: dropped with a warning here; a 500 (node refuses it) there.
- no callback: 504 at the function's time limit here; no answer at all there (no time limit).
- an async handler that rejects (or any unhandled rejection) before the callback: 500 here; in
  `--fork-process=false` mode nothing catches it there, so the whole dev server process dies.
- private functions: 404 by URL here, served there; private assets: 404 here, 403 there.
- `Runtime.getAssets()`: every asset here (behavior.md), only the private ones there, so the spec's
  own `Runtime.getAssets()["/my-file.txt"]` sample (a public asset) is a 500 on twilio-run.
- `context`: `DOMAIN_NAME` is the request's Host here, the dev server's configured URL there;
  `SERVICE_SID` / `ENVIRONMENT_SID` are stable generated ids here, undefined there.
- module state: a warm worker keeps it between invocations here; twilio-run (`--live`, its default)
  reloads every function module on each request.

Not compared: response headers other than the ones a function sets (express adds ETag,
X-Powered-By, no-cache headers), the 4 MiB cap (none there) and leftover work after the callback
(there it keeps running). In twilio-run's default forked mode a Buffer reply is serialised over IPC
and arrives as JSON; in `--fork-process=false` it is sent as bytes, like here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from engine import pydeps
from tests.conftest import free_port

PROJECT = Path(__file__).resolve().parent / "projects" / "js-parity"
TWILIO_RUN_VERSION = "5.0.1"
RUNTIME_HANDLER_VERSION = "2.1.0"
NEVER_LIMIT_S = 1.0

CONFIG = {
    "min_idle": 1,
    "max_workers": 1,  # one warm worker: the module-state row sees it twice
    "services": {"js-parity": {"functions": {"/never": {"time_limit_s": NEVER_LIMIT_S}}}},
}

LOOPBACK_ONLY = r"""'use strict';
// Preloaded into the twilio-run dev server under test (node --require): it listens on 127.0.0.1
// only and cannot open a connection anywhere but loopback, so nothing can leave the machine.
const net = require('net');

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && args[0].path === undefined) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connectToLoopbackOnly(...args) {
  const normalized = typeof net._normalizeArgs === 'function' ? net._normalizeArgs(args) : args;
  const options = (normalized && normalized[0]) || {};
  const host = options.host || 'localhost';
  if (options.path === undefined && !LOOPBACK.has(host)) {
    throw new Error(`the twilio-run dev server under test may not connect to ${host}`);
  }
  return connect.apply(this, args);
};
"""


# --- twilio-run --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def twilio_run_home() -> Path:
    """twilio-run and @twilio/runtime-handler (and the parity project's dependency), npm-installed once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("the parity test needs `node` and `npm` on PATH to run twilio-run")
    home = pydeps.cache_root() / "twilio-run"
    marker = home / f".complete-{TWILIO_RUN_VERSION}-{RUNTIME_HANDLER_VERSION}"
    if not marker.is_file():
        home.mkdir(parents=True, exist_ok=True)
        deps = json.loads((PROJECT / "package.json").read_text())["dependencies"]
        manifest = {
            "name": "twilio-run-under-test", "version": "0.0.0", "private": True,
            "dependencies": {"twilio-run": TWILIO_RUN_VERSION, "@twilio/runtime-handler": RUNTIME_HANDLER_VERSION, **deps},
        }
        (home / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--ignore-scripts"],
            cwd=home, capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            pytest.fail(f"npm install of twilio-run failed in {home}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        marker.touch()
    return home


@dataclass
class DevServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_twilio_run(home: Path, workdir: Path) -> DevServer:
    """`twilio-run start` on a copy of the project (its node_modules: the cached install), on 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    project = workdir / "project"
    shutil.copytree(PROJECT, project)
    (project / "node_modules").symlink_to(home / "node_modules", target_is_directory=True)
    preload = workdir / "loopback-only.js"
    preload.write_text(LOOPBACK_ONLY)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "LANG": "C.UTF-8",
        "CI": "true", "NO_UPDATE_NOTIFIER": "1", "FORCE_COLOR": "0",
    }
    log_path = workdir / "twilio-run.log"
    cmd = [
        shutil.which("node") or "node", "--require", str(preload),
        str(home / "node_modules" / "twilio-run" / "bin" / "twilio-run.js"),
        "start", str(project), "--port", str(port), "--fork-process=false",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = DevServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"twilio-run exited with {proc.returncode}:\n{server.logs()[-3000:]}")
        try:
            if httpx.get(server.url + "/text", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"twilio-run did not answer within 90 s:\n{server.logs()[-3000:]}")


@pytest.fixture(scope="module")
def twilio_run(twilio_run_home, tmp_path_factory) -> Iterator[DevServer]:
    # No "twilio-run" in the project's path: its --live require-cache clearing skips such paths.
    server = start_twilio_run(twilio_run_home, tmp_path_factory.mktemp("devserver"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(PROJECT, backend=backend, config=CONFIG)


def send(base_url: str, method: str, path: str, **kwargs) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=kwargs.pop("timeout", 30), follow_redirects=False) as client:
        return client.request(method, path, **kwargs)


def both(engine, twilio_run, method: str, path: str, **kwargs) -> tuple[httpx.Response, httpx.Response]:
    return send(engine.url, method, path, **kwargs), send(twilio_run.url, method, path, **kwargs)


# --- where the contract and twilio-run agree ---------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

AGREE = [
    ("GET", "/text", {}),
    ("GET", "/unicode", {}),
    ("GET", "/object", {}),
    ("GET", "/array", {}),
    ("GET", "/boolean", {}),
    ("GET", "/boolean?value=false", {}),
    ("GET", "/empty", {}),
    ("GET", "/null", {}),
    ("GET", "/buffer", {}),
    ("GET", "/twiml-message?From=%2B14444444444&Body=Ahoy%21", {}),
    ("GET", "/twiml-voice?From=%2B14444444444&FromCity=SEATTLE", {}),
    ("GET", "/twiml-fax", {}),
    ("GET", "/params?age=42&firstName=Rick", {}),
    ("GET", "/params?a=1&a=2&b=x", {}),
    ("POST", "/params?age=42&firstName=Rick", {"json": {"color": "orange", "age": "43"}}),
    ("POST", "/params?a=query&b=query", {"content": b"a=form&c=form&d=1&d=2", "headers": FORM}),
    ("GET", "/cookies", {"headers": {"Cookie": "a=1; b=hello%20world; a=2"}}),
    ("GET", "/header", {"headers": {"X-Custom": "yes"}}),
    ("GET", "/env", {}),
    ("GET", "/status-204", {}),
    ("GET", "/redirect", {}),
    ("GET", "/cors", {}),
    ("GET", "/response-typed", {}),
    ("GET", "/response-buffer", {}),
    ("GET", "/cookies-set", {}),
    ("GET", "/error-object", {}),
    ("GET", "/private-asset", {}),
    ("GET", "/private-require?word=hi", {}),
    ("GET", "/dependency?value=5", {}),
    ("GET", "/dependency?value=five", {}),
    ("GET", "/async-await", {}),
]
# Headers the functions set themselves, compared too where present.
SET_HEADERS = ("location", "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers")


@pytest.mark.parametrize("method, path, kwargs", AGREE, ids=[f"{m} {p}" for m, p, _ in AGREE])
def test_same_reply_as_twilio_run(engine, twilio_run, method, path, kwargs):
    ours, theirs = both(engine, twilio_run, method, path, **kwargs)
    assert ours.status_code == theirs.status_code, (ours.text, theirs.text)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type")
    assert ours.content == theirs.content
    for name in SET_HEADERS:
        assert ours.headers.get(name) == theirs.headers.get(name), name
    assert ours.headers.get_list("set-cookie") == theirs.headers.get_list("set-cookie")


def test_the_agreeing_rows_cover_every_kind_of_reply(engine, twilio_run):
    """A guard on the list above: text, JSON, TwiML, bytes, empty, Twilio.Response and an error all agree."""
    types = {send(engine.url, m, p, **k).headers.get("content-type") for m, p, k in AGREE}
    assert {"text/plain; charset=utf-8", "application/json; charset=utf-8", "text/xml; charset=utf-8",
            "application/octet-stream", "image/png", None} <= types


# --- where the contract deliberately differs ---------------------------------------------------


def test_string_error_is_text_plain_here_text_html_there(engine, twilio_run):
    ours, theirs = both(engine, twilio_run, "GET", "/error-string")
    assert (ours.status_code, ours.headers["content-type"]) == (500, "text/plain; charset=utf-8")
    assert ours.text == theirs.text == "Something went very, very wrong."
    assert (theirs.status_code, theirs.headers["content-type"]) == (500, "text/html; charset=utf-8")


@pytest.mark.parametrize("path, name, message", [("/error-error", "TypeError", "bad value"), ("/throw", "RangeError", "handler blew up")])
def test_error_body_has_no_stack_here_and_a_stack_there(engine, twilio_run, path, name, message):
    ours, theirs = both(engine, twilio_run, "GET", path)
    assert (ours.status_code, ours.headers["content-type"]) == (500, "application/json; charset=utf-8")
    assert ours.json() == {"message": message, "name": name}
    assert theirs.status_code == 500
    assert set(theirs.json()) == {"message", "name", "stack"}
    assert {k: theirs.json()[k] for k in ("message", "name")} == ours.json()


@pytest.mark.parametrize(
    "path, ours_type, theirs_type",
    [
        ("/response-string", "text/plain; charset=utf-8", "text/html; charset=utf-8"),
        ("/response-object", "application/json", "application/json; charset=utf-8"),
        ("/response-json", "application/json", "application/json; charset=utf-8"),  # set by the handler
    ],
)
def test_twilio_response_content_type_is_the_contracts_here_and_expresss_there(engine, twilio_run, path, ours_type, theirs_type):
    ours, theirs = both(engine, twilio_run, "GET", path)
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content
    assert ours.headers["content-type"] == ours_type
    assert theirs.headers["content-type"] == theirs_type


def test_a_number_reply_is_json_here_and_a_bad_status_code_there(engine, twilio_run):
    ours, theirs = both(engine, twilio_run, "GET", "/number")
    assert (ours.status_code, ours.headers["content-type"], ours.json()) == (200, "application/json; charset=utf-8", 42)
    assert theirs.status_code == 500 and "Invalid status code" in theirs.text


def test_a_crlf_header_is_dropped_here_and_a_500_there(engine, twilio_run):
    ours, theirs = both(engine, twilio_run, "GET", "/crlf-header")
    assert (ours.status_code, ours.text) == (200, "body")
    assert "x-bad" not in ours.headers and "injected" not in ours.headers
    assert theirs.status_code == 500


def test_no_callback_is_504_at_the_time_limit_here_and_no_answer_there(engine, twilio_run):
    start = time.monotonic()
    ours = send(engine.url, "GET", "/never")
    assert ours.status_code == 504 and "timed out" in ours.text.lower()
    assert time.monotonic() - start < NEVER_LIMIT_S + 1
    with pytest.raises(httpx.ReadTimeout):
        send(twilio_run.url, "GET", "/never", timeout=NEVER_LIMIT_S + 2)


def test_private_functions_and_assets_are_404_here_and_reachable_or_403_there(engine, twilio_run):
    ours, theirs = both(engine, twilio_run, "GET", "/lib/shout")
    assert ours.status_code == 404
    assert (theirs.status_code, theirs.text) == (200, "private")
    ours, theirs = both(engine, twilio_run, "GET", "/secret.txt")
    assert ours.status_code == 404
    assert theirs.status_code == 403


def test_runtime_get_assets_lists_public_assets_here_and_only_private_ones_there(engine, twilio_run):
    ours, theirs = both(engine, twilio_run, "GET", "/asset")
    assert (ours.status_code, ours.text) == (200, (PROJECT / "assets" / "my-file.txt").read_text())
    assert theirs.status_code == 500 and theirs.json()["name"] == "TypeError"


def test_context_domain_and_sids_follow_the_request_and_the_service_here(engine, twilio_run):
    ours, theirs = both(engine, twilio_run, "GET", "/context")
    data = ours.json()
    assert data["DOMAIN_NAME"] == f"127.0.0.1:{engine.port}"
    assert data["SERVICE_SID"].startswith("ZS") and data["ENVIRONMENT_SID"].startswith("ZE")
    assert theirs.json() == {"DOMAIN_NAME": f"localhost:{twilio_run.url.rsplit(':', 1)[1]}",
                             "SERVICE_SID": None, "ENVIRONMENT_SID": None}


def test_module_state_survives_between_invocations_here_and_is_reloaded_there(engine, twilio_run):
    ours = [send(engine.url, "GET", "/state").json()["count"] for _ in range(3)]
    theirs = [send(twilio_run.url, "GET", "/state").json()["count"] for _ in range(3)]
    assert ours == [ours[0], ours[0] + 1, ours[0] + 2]
    assert theirs == [1, 1, 1]


def test_an_async_rejection_is_a_500_here_and_takes_the_dev_server_down_there(engine, twilio_run_home, tmp_path):
    """Its own twilio-run: the unhandled rejection ends that dev server process."""
    ours = send(engine.url, "GET", "/async-throw")
    assert (ours.status_code, ours.json()) == (500, {"message": "async bad", "name": "TypeError"})
    server = start_twilio_run(twilio_run_home, tmp_path / "doomed-devserver")
    try:
        with pytest.raises(httpx.HTTPError):
            send(server.url, "GET", "/async-throw", timeout=10)
        assert server.proc.wait(10) != 0
    finally:
        server.stop()
