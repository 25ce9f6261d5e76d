"""After the callback, nothing the invocation started may run (behavior.md, "callback").

Each handler below starts work before (or right after) calling back and records in module-level
state, and in a log line, whatever of that work runs. A later invocation on the same runner reads
that state: it must be empty. Where the runner cannot stop something, `done.clean` must be false
(the engine then replaces the worker), and the reason says why.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import Iterator

import pytest

STATE = """
const state = globalThis.__leftovers || (globalThis.__leftovers = []);
const record = (what) => { state.push(what); console.log('LEFTOVER RAN: ' + what); };
"""

HANDLERS = {
    "state": "exports.handler = (c, e, callback) => callback(null, globalThis.__leftovers || []);",
    "timers": """exports.handler = (c, e, callback) => {
  setTimeout(() => record('timeout'), 20);
  setInterval(() => record('interval'), 5);
  setTimeout(() => record('timeout-0'), 0);
  setImmediate(() => record('immediate'));
  process.nextTick(() => record('nextTick'));
  queueMicrotask(() => record('microtask'));
  Promise.resolve().then(() => record('then'));
  require('timers/promises').setTimeout(20).then(() => record('timers/promises'));
  callback(null, 'answered');
};""",
    "after-callback": """exports.handler = (c, e, callback) => {
  callback(null, 'answered');
  setTimeout(() => record('timeout created after the callback'), 0);
  setImmediate(() => record('immediate created after the callback'));
  process.nextTick(() => record('tick created after the callback'));
  Promise.resolve().then(() => record('then created after the callback'));
  require('fs').stat(__filename, () => record('fs callback created after the callback'));
};""",
    "promise-chain": """exports.handler = (c, e, callback) => {
  new Promise((resolve) => setTimeout(resolve, 30))
    .then(() => { record('chain step 1'); return 2; })
    .then(() => record('chain step 2'))
    .catch(() => record('chain catch'))
    .finally(() => record('chain finally'));
  Promise.all([new Promise((r) => setTimeout(r, 10)), 1]).then(() => record('Promise.all'));
  setTimeout(() => callback(null, 'answered'), 5);
};""",
    "async-pending": """exports.handler = async (c, e, callback) => {
  setTimeout(() => callback(null, 'answered'), 5);
  await new Promise((resolve) => setTimeout(resolve, 40));
  record('async function resumed');
};""",
    "server": """const net = require('net');
exports.handler = (c, e, callback) => {
  const server = net.createServer((sock) => { record('connection'); sock.end('hello'); });
  server.on('close', () => record('server close event'));
  server.listen(0, '127.0.0.1', () => {
    globalThis.__port = server.address().port;
    callback(null, String(globalThis.__port));
  });
};""",
    "connect": """const net = require('net');
exports.handler = (c, e, callback) => {
  const sock = net.connect(Number(e.port), '127.0.0.1', () => callback(null, 'connected'));
  sock.on('data', (d) => record('data: ' + d));
  sock.on('end', () => record('end'));
  sock.on('close', () => record('close'));
  sock.on('error', (err) => record('error ' + err.code));
};""",
    "probe": """const net = require('net');
exports.handler = (c, e, callback) => {
  const sock = net.connect(Number(e.port), '127.0.0.1');
  sock.on('connect', () => { sock.destroy(); callback(null, 'open'); });
  sock.on('error', (err) => callback(null, err.code));
};""",
    "http-pending": """const http = require('http');
exports.handler = (c, e, callback) => {
  new Promise((resolve, reject) => {
    http.get(e.url, (res) => { let d = ''; res.on('data', (x) => d += x); res.on('end', () => resolve(d)); }).on('error', reject);
  }).then((body) => record('http response: ' + body)).catch((err) => record('http error: ' + err.message));
  setTimeout(() => callback(null, 'answered'), 20);
};""",
    "fetch-pending": """exports.handler = (c, e, callback) => {
  fetch(e.url).then((r) => r.text()).then((t) => record('fetch: ' + t), (err) => record('fetch error: ' + err.message));
  setTimeout(() => callback(null, 'answered'), 20);
};""",
    "fetch": """exports.handler = async (c, e, callback) => {
  const r = await fetch(e.url);
  return callback(null, await r.text());
};""",
    "http-get": """const http = require('http');
exports.handler = (c, e, callback) => {
  http.get(e.url, (res) => { let d = ''; res.on('data', (x) => d += x); res.on('end', () => callback(null, d)); })
    .on('error', (err) => callback(err));
};""",
    "child": """const cp = require('child_process');
exports.handler = (c, e, callback) => {
  const child = cp.spawn('sleep', ['30']);
  child.on('exit', () => record('child exit event'));
  cp.execFile('sleep', ['1'], (err, out) => record('execFile callback ' + out));
  setTimeout(() => callback(null, String(child.pid)), 20);
};""",
    "slow-exit-child": """const cp = require('child_process');
exports.handler = (c, e, callback) => {
  // A Node.js child with memory to give back: its exit takes milliseconds, so the runner reaps it
  // after `done`, every time.
  const code = "const b = Buffer.alloc(32 * 1024 * 1024, 1); process.stdout.write('ready'); setTimeout(() => {}, 30000);";
  const child = cp.spawn(process.execPath, ['-e', code]);
  child.on('exit', () => record('child exit event'));
  child.stdout.once('data', () => callback(null, String(child.pid)));
};""",
    "watcher": """const fs = require('fs');
exports.handler = (c, e, callback) => {
  fs.watch(e.dir, () => record('watch event'));
  fs.watchFile(e.file, {interval: 10}, () => record('watchFile event'));
  callback(null, 'watching');
};""",
    "process-listeners": """exports.handler = (c, e, callback) => {
  if (e.check) return callback(null, {sigusr2: process.listenerCount('SIGUSR2'), exit: process.listenerCount('exit'),
    unhandled: process.listenerCount('unhandledRejection')});
  process.on('SIGUSR2', () => record('signal'));
  process.on('exit', () => record('exit listener'));
  callback(null, 'added');
};""",
    "async-answer": """exports.handler = async (c, e, callback) => {
  callback(null, 'answered');
  return 'ignored';
};""",
    "await-after": """exports.handler = async (c, e, callback) => {
  callback(null, 'answered');
  await null;
  record('code after await');
};""",
    "resolver": """exports.handler = (c, e, callback) => {
  if (e.resolve) { globalThis.__resolve(); return callback(null, 'resolved'); }
  new Promise((resolve) => { globalThis.__resolve = resolve; }).then(() => record('resolved later'));
  callback(null, 'stored');
};""",
    "fs-promises": """exports.handler = (c, e, callback) => {
  require('fs').promises.readFile(__filename).then(() => record('fs.promises'));
  callback(null, 'answered');
};""",
    "busy-after": """exports.handler = (c, e, callback) => {
  callback(null, 'answered first');
  const until = Date.now() + 800;
  while (Date.now() < until) {}
};""",
    "grandchild": """const cp = require('child_process');
exports.handler = (c, e, callback) => {
  // The shell exits at once; the subshell it put in the background is orphaned.
  const command = `(sleep 1; echo late > ${e.file}) > /dev/null 2>&1 &`;
  if (e.how === 'execSync') cp.execSync(command);
  else if (e.how === 'exec') cp.exec(command);
  else if (e.how === 'setsid-child') cp.spawn('sh', ['-c', command], { detached: true, stdio: 'ignore' });
  setTimeout(() => callback(null, 'started'), 100);
};""",
    "shell-child": """const cp = require('child_process');
exports.handler = (c, e, callback) => {
  cp.exec('sleep 1; echo late', (err, out) => record('exec callback ' + out));
  setTimeout(() => callback(null, 'answered'), 20);
};""",
    "worker": """const { Worker } = require('worker_threads');
exports.handler = (c, e, callback) => {
  const code = `const fs = require('fs'); let i = 0;
    setInterval(() => fs.appendFileSync(${JSON.stringify(e.file)}, 'tick ' + (i++) + '\\n'), 20);`;
  const worker = new Worker(code, { eval: true });
  worker.on('exit', () => record('worker exit event'));
  worker.on('message', () => record('worker message'));
  worker.on('online', () => callback(null, String(worker.threadId)));
};""",
    "busy-worker": """const { Worker } = require('worker_threads');
exports.handler = (c, e, callback) => {
  // A thread that never yields to its event loop: only termination stops it.
  const code = `const fs = require('fs'); const cell = new Int32Array(new SharedArrayBuffer(4));
    const port = require('worker_threads').parentPort;
    for (let i = 0; ; i++) { fs.appendFileSync(${JSON.stringify(e.file)}, 'spin ' + i + '\\\\n'); if (i === 0) port.postMessage('spinning'); Atomics.wait(cell, 0, 0, 20); }`;
  new Worker(code, { eval: true }).once('message', () => callback(null, 'started'));
};""",
    "finished-worker": """const { Worker } = require('worker_threads');
exports.handler = (c, e, callback) => {
  const worker = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
  worker.once('message', (n) => worker.once('exit', () => callback(null, String(n))));
};""",
    "finalizer": """const gc = (() => { require('v8').setFlagsFromString('--expose-gc'); return require('vm').runInNewContext('gc'); })();
const registry = new FinalizationRegistry((tag) => record('finalizer ' + tag));
exports.handler = (c, e, callback) => {
  if (e.collect) { gc(); return setTimeout(() => { gc(); setTimeout(() => callback(null, 'collected'), 50); }, 50); }
  const own = new FinalizationRegistry((tag) => record('own finalizer ' + tag));
  for (let i = 0; i < 5; i++) {
    registry.register({ payload: new Array(1000).fill(i) }, 'module registry ' + i);
    own.register({ payload: new Array(1000).fill(i) }, i);
  }
  globalThis.__own = own;
  if (!e.during) return callback(null, 'registered');
  // Collected while the invocation still runs: the callbacks run, as the invocation's code.
  gc();
  setTimeout(() => callback(null, (globalThis.__leftovers || []).length), 100);
};""",
    "resource": """const { AsyncResource } = require('async_hooks');
exports.handler = (c, e, callback) => {
  if (e.later) { globalThis.__resource.runInAsyncScope(() => record('earlier invocation code')); return callback(null, 'ran it'); }
  globalThis.__resource = new AsyncResource('UserResource');
  callback(null, 'kept');
};""",
}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return {f"functions/{name}.js": STATE + code + "\n" for name, code in HANDLERS.items()}


@pytest.fixture
def runner(node_runner, files):
    return node_runner(files)


def settle(seconds: float = 0.3) -> None:
    """Give anything that escaped the time to run before the state is read."""
    time.sleep(seconds)


def assert_nothing_ran(runner) -> None:
    out = runner.invoke("state")
    assert out.json() == [], out.json()
    leaked = [f for f in runner.history if f["type"] == "log" and "LEFTOVER RAN" in f.get("message", "")]
    assert leaked == []


@pytest.fixture
def slow_http_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers after 300 ms (keep-alive)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/slow"):
                time.sleep(0.3)
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"pong")

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the runner hangs up on purpose: a broken pipe here is expected

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_timers_immediates_ticks_and_reactions_never_run_after_the_callback(runner) -> None:
    out = runner.invoke("timers")
    assert out.text == "answered"
    assert out.done["clean"] is True, out.done
    settle()
    assert_nothing_ran(runner)


def test_work_created_after_the_callback_in_the_same_turn_never_runs(runner) -> None:
    out = runner.invoke("after-callback")
    assert out.done["clean"] is True, out.done
    settle()
    assert_nothing_ran(runner)


def test_a_pending_promise_chain_never_runs(runner) -> None:
    out = runner.invoke("promise-chain")
    assert out.text == "answered"
    assert out.done["clean"] is True, out.done
    settle()
    assert_nothing_ran(runner)


def test_a_suspended_async_handler_never_resumes(runner) -> None:
    out = runner.invoke("async-pending")
    assert out.done["clean"] is True, out.done
    settle()
    assert_nothing_ran(runner)


def test_a_listening_server_is_closed(runner) -> None:
    out = runner.invoke("server")
    port = int(out.text)
    assert out.done["clean"] is True, out.done
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert runner.invoke("probe", {"port": port}).text == "ECONNREFUSED"
    assert_nothing_ran(runner)


@pytest.fixture
def talker() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server that accepts, waits 200 ms, sends data, and records what it sees afterwards."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            time.sleep(0.2)
            try:
                conn.sendall(b"late data")
                conn.settimeout(2)
                seen.append(conn.recv(100))  # b"" once the runner closed its end
            except OSError as exc:
                seen.append(repr(exc).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(5)


def test_a_client_socket_is_closed_and_hears_nothing_more(runner, talker) -> None:
    port, seen = talker
    out = runner.invoke("connect", {"port": port})
    assert out.text == "connected"
    assert out.done["clean"] is True, out.done
    settle(0.6)
    assert seen and seen[0] in (b"", b"ConnectionResetError(104, 'Connection reset by peer')"), seen
    assert_nothing_ran(runner)


def test_a_pending_http_request_never_delivers(runner, slow_http_server) -> None:
    out = runner.invoke("http-pending", {"url": slow_http_server + "/slow"})
    assert out.text == "answered"
    assert out.done["clean"] is True, out.done
    settle(0.6)
    assert_nothing_ran(runner)


def test_a_pending_fetch_never_delivers_and_makes_the_worker_dirty(runner, slow_http_server) -> None:
    """fetch() keeps the request in undici's process-wide pool: the runner cannot prove it dead."""
    out = runner.invoke("fetch-pending", {"url": slow_http_server + "/slow"})
    assert out.text == "answered"
    assert out.done["clean"] is False
    assert "still pending and reachable" in out.done["reason"]
    settle(0.6)
    assert_nothing_ran(runner)


def test_connection_pools_keep_working_after_a_sweep(runner, slow_http_server) -> None:
    """Keep-alive sockets of http.globalAgent and of fetch are closed each time; the next request reconnects."""
    for name in ["fetch", "http-get", "fetch", "http-get", "fetch"]:
        out = runner.invoke(name, {"url": slow_http_server + "/fast"})
        assert (out.status, out.text, out.done["clean"]) == (200, "pong", True), (name, out.result, out.done)


def test_child_processes_are_killed(runner) -> None:
    """Also under CPU load, when the killed child's exit is reaped only after `done`: node's handling
    of that exit is the runner's, not the invocation's code, so the worker stays (no exit 70)."""
    out = runner.invoke("child")
    pid = int(out.text)
    assert out.done["clean"] is True, out.done
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)
    settle(1.3)  # the exec'd `sleep 1` would have answered by now
    assert_nothing_ran(runner)


def test_a_child_exit_reaped_after_done_is_not_the_invocations_code(runner) -> None:
    out = runner.invoke("slow-exit-child")
    pid = int(out.text)
    assert out.done["clean"] is True, out.done
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)
    settle()
    assert runner.proc.poll() is None, [f for f in runner.history if f["type"] == "log"]
    assert_nothing_ran(runner)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def test_watchers_are_closed(runner, tmp_path) -> None:
    watched = tmp_path / "watched.txt"
    watched.write_text("a")
    out = runner.invoke("watcher", {"dir": str(tmp_path), "file": str(watched)})
    assert out.done["clean"] is True, out.done
    watched.write_text("changed")
    (tmp_path / "new.txt").write_text("new")
    settle(0.4)
    assert_nothing_ran(runner)


def test_process_listeners_added_by_a_handler_are_removed(runner) -> None:
    before = runner.invoke("process-listeners", {"check": True}).json()
    assert before["sigusr2"] == 0 and before["unhandled"] >= 1
    runner.invoke("process-listeners")
    assert runner.invoke("process-listeners", {"check": True}).json() == before
    assert_nothing_ran(runner)


def test_handlers_that_leave_nothing_behind_are_clean_between_swept_ones(runner) -> None:
    """Invocations that start nothing finish at once; swept ones in between change nothing about that."""
    for _ in range(20):
        for name in ("async-answer", "timers", "state"):
            out = runner.invoke(name)
            assert out.done["clean"] is True, (name, out.done)
    settle()
    assert_nothing_ran(runner)


def test_code_resuming_after_an_await_makes_the_worker_dirty(runner) -> None:
    out = runner.invoke("await-after")
    assert out.text == "answered"
    assert out.done["clean"] is False
    assert "`await`" in out.done["reason"]


def test_a_reachable_pending_promise_makes_the_worker_dirty(runner) -> None:
    out = runner.invoke("resolver")
    assert out.done["clean"] is False
    assert "still pending and reachable" in out.done["reason"]
    # Had the engine not replaced the worker, settling it later still runs nothing of the handler's.
    later = runner.invoke("resolver", {"resolve": True})
    assert later.text == "resolved"
    settle(0.1)
    assert_nothing_ran(runner)


def test_an_fs_promises_operation_in_flight_makes_the_worker_dirty(runner) -> None:
    out = runner.invoke("fs-promises")
    assert out.done["clean"] is False
    assert "FSREQPROMISE" in out.done["reason"]


def test_result_is_sent_the_moment_the_callback_is_called(runner) -> None:
    start = time.monotonic()
    runner.send({"type": "invoke", "id": "busy", "function": "busy-after", "event": {}, "context": {}})
    result, _ = runner.until({"result"})
    result_at = time.monotonic() - start
    done, _ = runner.until({"done"})
    done_at = time.monotonic() - start
    assert result["body"] == "answered first"
    assert result_at < 0.6 <= done_at, (result_at, done_at)
    assert done["clean"] is True


def test_code_of_an_earlier_invocation_running_later_taints_the_current_one(runner) -> None:
    first = runner.invoke("resource")
    assert first.done["clean"] is True
    second = runner.invoke("resource", {"later": True})
    assert second.text == "ran it"
    assert second.done["clean"] is False
    assert f"earlier invocation ({first.result['id']})" in second.done["reason"]


def test_an_idle_worker_that_sees_leftover_code_exits(node_runner) -> None:
    runner = node_runner({
        "functions/keep.js": """const { AsyncResource } = require('async_hooks');
setInterval(() => { if (globalThis.__r) globalThis.__r.runInAsyncScope(() => {}); }, 20);
exports.handler = (c, e, callback) => { globalThis.__r = new AsyncResource('Kept'); callback(null, 'kept'); };
""",
    })
    out = runner.invoke("keep")
    assert out.done["clean"] is True
    assert runner.proc.wait(timeout=5) == 70
    assert any("exiting so the worker is replaced" in f.get("message", "") for f in runner.history)


def _wait_dead(pid: int, seconds: float = 3) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.parametrize("how", ["exec", "execSync", "setsid-child"])
def test_handler_orphaned_grandchild_makes_the_worker_dirty_and_is_killed(runner, tmp_path, how) -> None:
    """`exec('(sleep 1; ...) &')`: the shell is gone at once, its background subshell lives on. It is
    found through /proc (the runner leads its session here, as under the process backend; in a
    container it owns the PID namespace), killed, and the worker is reported dirty."""
    marker = tmp_path / "late.txt"
    out = runner.invoke("grandchild", {"file": str(marker), "how": how})
    assert out.text == "started"
    assert out.done["clean"] is False, out.done
    assert "still running after its callback" in out.done["reason"] and "(sleep)" in out.done["reason"], out.done
    time.sleep(1.4)
    assert not marker.exists(), "the orphaned subshell ran after the callback"


def test_a_shell_child_killed_by_the_sweep_leaves_its_own_child_behind_so_the_worker_is_dirty(runner) -> None:
    out = runner.invoke("shell-child")
    assert out.done["clean"] is False, out.done
    assert "(sleep)" in out.done["reason"]
    settle(1.3)
    assert_nothing_ran(runner)


def test_handler_worker_thread_running_at_the_callback_makes_the_worker_dirty_and_is_terminated(runner, tmp_path) -> None:
    ticks = tmp_path / "ticks.txt"
    out = runner.invoke("worker", {"file": str(ticks)})
    assert out.done["clean"] is False, out.done
    assert "worker_threads Worker" in out.done["reason"], out.done
    settle(0.2)
    written = ticks.read_text() if ticks.exists() else ""
    for _ in range(3):  # the engine would replace the worker; were it reused, the thread is gone anyway
        runner.invoke("state")
        settle(0.1)
    assert (ticks.read_text() if ticks.exists() else "") == written, "the worker thread kept running"


def test_handler_busy_worker_thread_is_terminated(runner, tmp_path) -> None:
    spins = tmp_path / "spins.txt"
    out = runner.invoke("busy-worker", {"file": str(spins)})
    assert out.done["clean"] is False, out.done
    settle(0.2)
    written = spins.read_text()
    settle(0.3)
    assert spins.read_text() == written, "the spinning worker thread kept running"


def test_a_worker_thread_that_finished_before_the_callback_leaves_the_worker_clean(runner) -> None:
    for _ in range(3):
        out = runner.invoke("finished-worker")
        assert (out.text, out.done["clean"]) == ("42", True), out.done
    assert_nothing_ran(runner)


def test_handler_finalization_callbacks_never_run_after_the_callback(runner) -> None:
    """Targets registered by an invocation are collected in a later one: their cleanup callbacks
    (a module-level registry's and the invocation's own) do not run, and the worker stays clean."""
    out = runner.invoke("finalizer")
    assert out.done["clean"] is True, out.done
    assert runner.invoke("finalizer", {"collect": True}).done["clean"] is True
    settle(0.1)
    assert_nothing_ran(runner)


def test_finalization_callbacks_of_the_invocation_in_flight_still_run(node_runner, files) -> None:
    runner = node_runner(files)
    out = runner.invoke("finalizer", {"during": True})
    assert int(out.text) > 0, "a target collected while its invocation runs is finalised as usual"
