"""Handler output becomes capped `log` frames and never corrupts the protocol stream."""

from __future__ import annotations

import json

import pytest

HANDLERS = {
    "levels": """exports.handler = (c, e, callback) => {
  console.log('log %s', 'formatted'); console.info('info', 1, {a: 1}); console.debug('debug line');
  console.warn('warn line'); console.error('error line'); console.trace('trace line');
  console.dir({dir: true}); console.table([{x: 1}]);
  callback();
};""",
    "streams": """exports.handler = (c, e, callback) => {
  process.stdout.write('out part 1, ');
  process.stdout.write('out part 2\\nsecond out line\\n');
  process.stderr.write(Buffer.from('err bytes\\n'));
  process.stdout.write('no newline at the end', () => {});
  callback();
};""",
    "multiline": "exports.handler = (c, e, cb) => { console.log('one\\ntwo\\r\\nthree'); cb(); };",
    "forge": """exports.handler = (c, e, callback) => {
  const fake = JSON.stringify({type: 'result', id: e.id, status: 299, headers: [], body: 'forged', body_encoding: 'utf-8', error: null});
  console.log(fake); process.stdout.write(fake + '\\n'); process.stderr.write(fake + '\\n');
  require('fs').writeSync(1, fake + '\\n');
  require('fs').writeSync(1, 'raw without newline');
  callback(null, 'real');
};""",
    "child-inherit": """exports.handler = (c, e, callback) => {
  const child = require('child_process').spawn('sh', ['-c', 'echo from the child'], {stdio: 'inherit'});
  child.on('exit', () => callback(null, 'child done'));
};""",
    "flood": """exports.handler = (c, e, callback) => {
  const line = 'x'.repeat(99);
  for (let i = 0; i < 100000; i++) console.log(line);  // 10 MB of output
  callback(null, 'survived');
};""",
    "long-line": "exports.handler = (c, e, cb) => { console.log('é'.repeat(20000)); cb(null, 'ok'); };",
    "after-callback": "exports.handler = (c, e, cb) => { console.log('before'); cb(null, 'x'); console.log('after, same turn'); };",
}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return {f"functions/{name}.js": code + "\n" for name, code in HANDLERS.items()}


@pytest.fixture
def runner(node_runner, files):
    return node_runner(files)


def test_console_levels(runner) -> None:
    out = runner.invoke("levels")
    logs = [(f["level"], f["message"]) for f in out.logs]
    assert ("info", "log formatted") in logs
    assert ("info", "info 1 { a: 1 }") in logs
    assert ("info", "debug line") in logs  # behavior.md: console.debug → info
    assert ("warn", "warn line") in logs
    assert ("error", "error line") in logs
    assert ("error", "Trace: trace line") in logs
    assert ("info", "{ dir: true }") in logs
    assert any(level == "info" and "│" in message for level, message in logs), "console.table is logged"
    assert all(f["id"] == out.result["id"] for f in out.logs)


def test_process_streams_are_line_buffered(runner) -> None:
    out = runner.invoke("streams")
    logs = [(f["level"], f["message"]) for f in out.logs]
    assert logs == [
        ("info", "out part 1, out part 2"), ("info", "second out line"), ("error", "err bytes"),
        ("info", "no newline at the end"),
    ]


def test_one_frame_per_line(runner) -> None:
    assert runner.invoke("multiline").messages() == ["one", "two", "three"]


def test_handler_output_cannot_forge_frames(runner) -> None:
    invocation_id = "forge-1"
    out = runner.invoke("forge", {"id": invocation_id}, invocation_id=invocation_id)
    assert (out.status, out.text) == (200, "real")
    forged = [m for m in out.messages() if '"forged"' in m]
    assert len(forged) == 4, out.messages()
    assert "raw without newline" in out.messages("info")
    assert all(f["type"] in {"log", "result", "done"} for f in out.frames)


def test_child_process_output_is_captured(runner) -> None:
    out = runner.invoke("child-inherit")
    assert out.text == "child done"
    assert "from the child" in out.messages("info")


def test_ten_megabytes_of_logs_are_capped_and_counted(runner) -> None:
    out = runner.invoke("flood", timeout=60)
    assert (out.status, out.text) == (200, "survived")
    sent = sum(len(m.encode()) for m in out.messages())
    assert sent <= 65536
    assert len(out.messages()) == 65536 // 99
    assert out.done["log_bytes_dropped"] == 100000 * 99 - sent
    assert runner.invoke("multiline").done["log_bytes_dropped"] == 0, "the budget is per invocation"


def test_small_log_cap(node_runner, files) -> None:
    runner = node_runner(files, limits={"max_log_bytes": 10})
    out = runner.invoke("multiline")
    assert out.messages() == ["one", "two"]
    assert out.done["log_bytes_dropped"] == len("three")


def test_long_lines_are_chopped_at_utf8_boundaries(runner) -> None:
    out = runner.invoke("long-line")
    pieces = out.messages()
    assert "".join(pieces) == "é" * 20000
    assert all(len(p.encode()) <= 16 * 1024 for p in pieces) and len(pieces) == 3


def test_frames_stay_under_a_small_frame_limit(node_runner, files) -> None:
    runner = node_runner(files, limits={"max_frame_bytes": 4096, "max_log_bytes": 1 << 20})
    out = runner.invoke("long-line")
    assert "".join(out.messages()) == "é" * 20000
    assert all(len(json.dumps(f, ensure_ascii=False).encode()) < 4096 for f in out.frames)


def test_output_after_the_callback_in_the_same_turn_is_kept(runner) -> None:
    out = runner.invoke("after-callback")
    assert out.messages() == ["before", "after, same turn"]
    assert out.frames.index(out.result) < [f.get("message") for f in out.frames].index("after, same turn")
