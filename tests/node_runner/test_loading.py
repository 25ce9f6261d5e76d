"""Bootstrap: the globals before user code, loading every function, load errors, init errors."""

from __future__ import annotations

import json
import os

import pytest

JSON = "application/json; charset=utf-8"


def test_load_errors_are_reported_and_answered_as_500(node_runner) -> None:
    runner = node_runner({
        "functions/ok.js": "exports.handler = (c, e, cb) => cb(null, 'fine');\n",
        "functions/syntax.js": "exports.handler = (c, e, cb) => {\n  cb(null, 'x';\n};\n",
        "functions/sub/throws.js": "const x = 1;\nthrow new RangeError('no good at load');\n",
        "functions/missing-dep.js": "const nope = require('definitely-not-installed-xyz');\nexports.handler = () => {};\n",
        "functions/no-handler.js": "exports.other = () => {};\n",
        "functions/not-a-function.js": "exports.handler = 42;\n",
    })
    errors = runner.ready["load_errors"]
    assert set(errors) == {"syntax", "sub/throws", "missing-dep", "no-handler", "not-a-function"}
    assert errors["syntax"].startswith("functions/syntax.js: SyntaxError: ")
    assert errors["sub/throws"] == "functions/sub/throws.js: RangeError: no good at load (line 2)"
    assert errors["missing-dep"].startswith("functions/missing-dep.js: Error: Cannot find module 'definitely-not-installed-xyz'")
    assert "has no `handler`" in errors["no-handler"] and errors["no-handler"].startswith("functions/no-handler.js")

    assert runner.invoke("ok").text == "fine"
    for name, error_name in [("syntax", "SyntaxError"), ("sub/throws", "RangeError"), ("missing-dep", "Error"),
                             ("no-handler", "Error"), ("not-a-function", "TypeError")]:
        out = runner.invoke(name)
        assert (out.status, out.header("Content-Type")) == (500, JSON), name
        assert out.json() == {"message": errors[name], "name": error_name}
        assert out.done["clean"] is True
    # the load error's stack went to the bootstrap log, before `ready`
    boot = [f["message"] for f in runner.boot_logs if f["type"] == "log"]
    assert all(f["id"] is None for f in runner.boot_logs)
    assert any("no good at load" in m for m in boot)


def test_globals_exist_before_any_user_code(node_runner) -> None:
    runner = node_runner({
        "functions/top.js": """
const seen = {
  twilio: typeof Twilio, response: typeof Twilio.Response, messaging: typeof Twilio.twiml.MessagingResponse,
  voice: typeof Twilio.twiml.VoiceResponse, fax: typeof Twilio.twiml.FaxResponse,
  accessToken: typeof Twilio.jwt.AccessToken, validate: typeof Twilio.validateRequest,
  assets: Object.keys(Runtime.getAssets()).sort(), functions: Object.keys(Runtime.getFunctions()).sort(),
  globalFunctions: Object.keys(Functions).sort(),
  text: Runtime.getAssets()['/secret.private.txt'].open(),
};
exports.handler = (context, event, callback) => callback(null, seen);
""",
        "functions/helper.private.js": "exports.greet = (n) => `hi ${n}`;\nexports.handler = (c, e, cb) => cb(null, 'private');\n",
        "functions/deep/er/fn.js": "exports.handler = (c, e, cb) => cb();\n",
        "assets/logo.png": b"\x89PNG\r\n",
        "assets/secret.private.txt": "top secret ✓\n",
        "assets/css/site.css": "body {}\n",
    })
    seen = runner.invoke("top").json()
    assert seen == {
        "twilio": "function", "response": "function", "messaging": "function", "voice": "function", "fax": "function",
        "accessToken": "function", "validate": "function",
        "assets": ["/css/site.css", "/logo.png", "/secret.private.txt"],
        "functions": ["deep/er/fn", "helper", "top"], "globalFunctions": ["deep/er/fn", "helper", "top"],
        "text": "top secret ✓\n",
    }


def test_runtime_functions_paths_are_loadable_with_require(node_runner) -> None:
    runner = node_runner({
        "functions/main.js": """
exports.handler = (context, event, callback) => {
  const info = Runtime.getFunctions()['helper'];
  const helper = require(info.path);
  callback(null, {greeting: helper.greet('ada'), absolute: info.path.startsWith('/'), same: helper === require(Functions.helper.path)});
};
""",
        "functions/helper.private.js": "exports.greet = (n) => `hi ${n}`;\nexports.handler = (c, e, cb) => cb();\n",
    })
    out = runner.invoke("main")
    assert out.json() == {"greeting": "hi ada", "absolute": True, "same": True}


def test_runtime_assets_paths_and_open(node_runner) -> None:
    runner = node_runner({
        "functions/a.js": """
exports.handler = (context, event, callback) => {
  const a = Runtime.getAssets()['/data/info.json'];
  callback(null, {parsed: JSON.parse(a.open()), same: require('fs').readFileSync(a.path, 'utf8') === a.open()});
};
""",
        "assets/data/info.json": json.dumps({"k": "v"}),
    })
    assert runner.invoke("a").json() == {"parsed": {"k": "v"}, "same": True}


def test_runtime_get_sync(node_runner) -> None:
    files = {"functions/sync.js": """
exports.handler = (context, event, callback) => {
  try {
    const svc = Runtime.getSync();
    const named = Runtime.getSync({serviceName: 'IS123'});
    callback(null, {sid: svc._solution.sid, named: named._solution.sid});
  } catch (err) { callback(null, {error: err.message}); }
};
"""}
    without = node_runner(files).invoke("sync").json()
    assert without == {"error": "Runtime.getSync(): ACCOUNT_SID and AUTH_TOKEN must be set in the service's .env"}
    with_creds = node_runner(files, env={"ACCOUNT_SID": "AC" + "1" * 32, "AUTH_TOKEN": "secret"}).invoke("sync").json()
    assert with_creds == {"sid": "default", "named": "IS123"}


def test_context_env_overrides_builtins_and_get_twilio_client(node_runner) -> None:
    runner = node_runner({"functions/ctx.js": """
exports.handler = (context, event, callback) => {
  const client = context.getTwilioClient();
  callback(null, {domain: context.DOMAIN_NAME, path: context.PATH, service: context.SERVICE_SID,
    extra: context.EXTRA, sid: client.accountSid, keys: Object.keys(context).sort()});
};
"""}, env={"ACCOUNT_SID": "AC" + "2" * 32, "AUTH_TOKEN": "tok", "DOMAIN_NAME": "override.example", "EXTRA": "x"})
    out = runner.invoke("ctx", context={"DOMAIN_NAME": "builtin.example", "PATH": "/ctx"})
    assert out.json() == {
        "domain": "override.example", "path": "/ctx", "service": "ZS" + "0" * 32, "extra": "x", "sid": "AC" + "2" * 32,
        "keys": sorted(["ACCOUNT_SID", "AUTH_TOKEN", "DOMAIN_NAME", "ENVIRONMENT_SID", "EXTRA", "PATH", "SERVICE_SID",
                        "getTwilioClient"]),
    }


def test_a_proto_key_in_env_is_a_plain_context_value(node_runner) -> None:
    """A `.env` key named `__proto__` is an own value of context, never its prototype."""
    runner = node_runner({"functions/proto.js": """
exports.handler = (context, event, callback) => {
  const own = Object.getOwnPropertyDescriptor(context, '__proto__');
  callback(null, {value: own && own.value, plain: Object.getPrototypeOf(context) === Object.prototype,
    path: context.PATH});
};
"""}, env={"__proto__": "from-env"})
    for _ in range(2):
        assert runner.invoke("proto").json() == {"value": "from-env", "plain": True, "path": "/proto"}


def test_env_is_not_in_the_process_environment(node_runner) -> None:
    runner = node_runner({"functions/env.js": "exports.handler = (c, e, cb) => cb(null, process.env.AUTH_TOKEN || 'absent');\n"},
                         env={"AUTH_TOKEN": "tok"})
    assert runner.invoke("env").text == "absent"


def test_project_node_modules_come_first_and_twilio_falls_back_to_the_runner(node_runner) -> None:
    runner = node_runner({
        "functions/sub/deps.js": """
exports.handler = (context, event, callback) => {
  const local = require('local-only');
  const twilio = require('twilio');
  callback(null, {local: local.name, twilioIsGlobal: twilio === Twilio, hasTwiml: typeof twilio.twiml.VoiceResponse});
};
""",
        "node_modules/local-only/package.json": json.dumps({"name": "local-only", "main": "index.js"}),
        "node_modules/local-only/index.js": "exports.name = 'from the project';\n",
    })
    assert runner.invoke("sub/deps").json() == {"local": "from the project", "twilioIsGlobal": True, "hasTwiml": "function"}


def test_a_project_pinned_package_shadows_the_runner_copy(node_runner) -> None:
    runner = node_runner({
        "functions/pinned.js": "exports.handler = (c, e, cb) => cb(null, {mine: require('twilio').mine === true, global: typeof Twilio.twiml});\n",
        "node_modules/twilio/package.json": json.dumps({"name": "twilio", "version": "0.0.1", "main": "index.js"}),
        "node_modules/twilio/index.js": "exports.mine = true;\n",
    })
    assert runner.invoke("pinned").json() == {"mine": True, "global": "object"}


def test_ready_message_fields(node_runner) -> None:
    runner = node_runner({"functions/x.js": "exports.handler = (c, e, cb) => cb();\n"})
    ready = runner.ready
    assert ready["protocol"] == 1 and ready["runtime"] == "node"
    assert ready["runtime_version"].split(".")[0].isdigit()
    assert ready["pid"] == runner.proc.pid
    assert ready["load_errors"] == {}


def test_top_level_output_is_logged_before_ready_with_null_id(node_runner) -> None:
    runner = node_runner({"functions/noisy.js": "console.log('loading noisy');\nconsole.warn('careful');\nexports.handler = (c, e, cb) => cb();\n"})
    logs = [(f["id"], f["level"], f["message"]) for f in runner.boot_logs]
    assert (None, "info", "loading noisy") in logs and (None, "warn", "careful") in logs


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"this is not json\n", "malformed message"),
    (b"[1, 2]\n", "expected a JSON object"),
    (b'{"no": "type"}\n', "no string `type`"),
    (b'{"type": "invoke", "id": "x", "function": "f"}\n', "expected `init` first"),
    (b'{"type": "init", "protocol": 2}\n', "protocol version mismatch"),
    (b'{"type": "init", "protocol": 1, "project_root": ""}\n', "project_root"),
    (b'{"type": "init", "protocol": 1, "project_root": "/tmp", "functions": "nope"}\n', "init.functions"),
    (b'{"type": "init", "protocol": 1, "project_root": "/tmp", "limits": {"max_log_bytes": -1}}\n', "max_log_bytes"),
    (b"\xff\xfe\n", "malformed message"),
])
def test_bad_lines_before_init_are_init_errors_and_the_runner_stays_up(node_runner, raw, fragment) -> None:
    runner = node_runner({"functions/x.js": "exports.handler = (c, e, cb) => cb(null, 'up');\n"}, expect_ready=False)
    runner.send_raw(raw)
    frame, _ = runner.until({"init_error", "ready"})
    assert frame["type"] == "init_error" and fragment in frame["message"], frame
    frame, _ = runner.start()
    assert frame["type"] == "ready"
    assert runner.invoke("x").text == "up"


def test_bad_lines_after_init_are_error_logs(node_runner) -> None:
    runner = node_runner({"functions/x.js": "exports.handler = (c, e, cb) => cb(null, 'still up');\n"})
    runner.send_raw(b"garbage\n")
    frame, _ = runner.until({"log"})
    assert frame["level"] == "error" and "malformed message" in frame["message"] and frame["id"] is None
    runner.send(runner.init_message)
    frame, _ = runner.until({"log"})
    assert "second `init`" in frame["message"]
    runner.send({"type": "invoke", "function": "x"})
    frame, _ = runner.until({"log"})
    assert "`id` is not a non-empty string" in frame["message"]
    assert runner.invoke("x").text == "still up"


def test_unknown_function_is_500(node_runner) -> None:
    runner = node_runner({"functions/x.js": "exports.handler = (c, e, cb) => cb();\n"})
    out = runner.invoke("nope")
    assert out.status == 500 and "no function named" in out.json()["message"]


def test_runner_exits_cleanly_when_the_engine_closes_stdin(node_runner) -> None:
    runner = node_runner({"functions/x.js": "setInterval(() => {}, 1000);\nexports.handler = (c, e, cb) => cb();\n"})
    assert runner.close() == 0


def test_stdin_is_not_readable_by_handlers(node_runner) -> None:
    """A handler reading fd 0 or process.stdin gets nothing: the engine's frames are not its to read."""
    runner = node_runner({"functions/steal.js": """
exports.handler = (context, event, callback) => {
  let raw = 'nothing';
  try { const b = Buffer.alloc(100); const n = require('fs').readSync(0, b); raw = n ? b.toString('utf8', 0, n) : 'eof'; }
  catch (e) { raw = e.code; }
  if (process.stdin.readableEnded) return callback(null, {raw, data: 'ended'});
  let data = '';
  process.stdin.on('data', (d) => { data += d; });
  process.stdin.on('end', () => callback(null, {raw, data}));
};
"""})
    assert runner.invoke("steal").json() == {"raw": "eof", "data": ""}
    assert runner.invoke("steal").json() == {"raw": "eof", "data": "ended"}


def test_the_runner_does_not_need_the_project_as_cwd(node_runner) -> None:
    runner = node_runner({"functions/cwd.js": "exports.handler = (c, e, cb) => cb(null, process.cwd());\n"})
    assert os.path.isabs(runner.invoke("cwd").text)


def test_an_invoke_sent_before_done_waits_its_turn(node_runner) -> None:
    """One invocation at a time: a second `invoke` is queued until the first one's `done`."""
    runner = node_runner({"functions/slow.js": "exports.handler = (c, e, cb) => setTimeout(() => cb(null, e.n), 50);\n"})
    for n in ("first", "second"):
        runner.send({"type": "invoke", "id": n, "function": "slow", "event": {"n": n}, "context": {}})
    order = []
    while len(order) < 4:
        frame = runner.next_frame()
        if frame["type"] in ("result", "done"):
            order.append((frame["type"], frame["id"]))
    assert order == [("result", "first"), ("done", "first"), ("result", "second"), ("done", "second")]


def test_a_burst_of_queued_invokes_is_answered_in_order(node_runner) -> None:
    """Quick invocations finish inside their own run: the queue behind a slow one drains in a loop, not deeper and deeper."""
    runner = node_runner({
        "functions/slow.js": "exports.handler = (c, e, cb) => setTimeout(() => cb(null, 'slow'), 50);\n",
        "functions/quick.js": "exports.handler = (c, e, cb) => cb(null, e.n);\n",
    })
    count = 3000
    burst = [{"type": "invoke", "id": "slow", "function": "slow", "event": {}, "context": {}}]
    burst += [{"type": "invoke", "id": f"q{n}", "function": "quick", "event": {"n": str(n)}, "context": {}} for n in range(count)]
    runner.send_raw(b"".join(json.dumps(m).encode() + b"\n" for m in burst))
    results, dones = [], []
    while len(dones) < count + 1:
        frame = runner.next_frame()
        if frame["type"] == "result":
            results.append((frame["id"], frame["body"]))
        elif frame["type"] == "done":
            assert frame["clean"] is True and frame["id"] == results[-1][0], frame
            dones.append(frame["id"])
    assert results == [("slow", "slow")] + [(f"q{n}", str(n)) for n in range(count)]
    assert runner.proc.poll() is None
