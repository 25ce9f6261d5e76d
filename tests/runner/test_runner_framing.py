"""Pure framing, limits and log-sink rules of the Python runner (no subprocess)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions_runtime.channel import Channel
from functions_runtime.framing import (
    BadFrame, FrameTooLarge, Reply, decode_line, encode_frame, result_frame, utf8_chunks, utf8_cut,
)
from functions_runtime.limits import Limits
from functions_runtime.logsink import LogSink


def test_encode_frame_is_one_compact_json_line() -> None:
    data = encode_frame({"type": "log", "message": "a\nb é"}, 1000)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"type": "log", "message": "a\nb é"}


def test_encode_frame_replaces_lone_surrogates_to_stay_valid_utf8() -> None:
    data = encode_frame({"type": "log", "message": "x\ud800y"}, 1000)
    assert json.loads(data.decode("utf-8"))["message"] == "x?y"


def test_encode_frame_refuses_frames_over_the_limit() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame({"type": "log", "message": "x" * 100}, 50)


@pytest.mark.parametrize("line", [b"not json", b"[1,2]", b'{"no_type":1}', b'{"type":3}', b"\xff\xfe"])
def test_decode_line_rejects_anything_but_an_object_with_a_type(line: bytes) -> None:
    with pytest.raises(BadFrame):
        decode_line(line)


def test_utf8_chunks_never_split_a_character() -> None:
    text = ("é€😀" * 1000).encode()
    chunks = list(utf8_chunks(text, 16))
    assert all(len(c) <= 16 for c in chunks)
    assert b"".join(chunks) == text
    for chunk in chunks:
        chunk.decode("utf-8")  # each piece decodes on its own
    assert list(utf8_chunks(b"", 16)) == [b""]
    assert utf8_cut(b"abc", 10) == 3


def test_result_frame_text_body() -> None:
    frame = json.loads(result_frame("i", Reply(200, [("A", "1")], "hi"), 100, 10_000))
    assert frame == {"type": "result", "id": "i", "status": 200, "headers": [["A", "1"]], "body": "hi",
                     "body_encoding": "utf-8", "error": None}


def test_result_frame_bytes_body_is_base64() -> None:
    frame = json.loads(result_frame("i", Reply(200, [], b"\x00\xff"), 100, 10_000))
    assert frame["body_encoding"] == "base64" and base64.b64decode(frame["body"]) == b"\x00\xff"


def test_result_frame_body_over_max_response_bytes_is_response_too_large() -> None:
    frame = json.loads(result_frame("i", Reply(200, [], "é" * 60), 100, 10_000))
    assert frame["error"] == "response_too_large" and frame["size"] == 120 and frame["body"] == ""


def test_result_frame_falls_back_to_base64_when_json_escaping_would_overflow_the_frame() -> None:
    body = "\x01" * 1000  # 1000 bytes of body, 6000 bytes once JSON-escaped
    frame = json.loads(result_frame("i", Reply(200, [], body), 2000, 3000))
    assert frame["body_encoding"] == "base64" and base64.b64decode(frame["body"]) == body.encode()


def test_result_frame_with_huge_headers_reports_too_large_instead_of_an_oversized_frame() -> None:
    data = result_frame("i", Reply(200, [("X", "v" * 5000)], "ok"), 100, 3000)
    assert len(data) <= 3000 and json.loads(data)["error"] == "response_too_large"


def test_limits_defaults_and_validation() -> None:
    assert Limits.from_init(None) == Limits()
    assert Limits.from_init({"max_log_bytes": 10}).max_log_bytes == 10
    with pytest.raises(ValueError, match="max_frame_bytes"):
        Limits.from_init({"max_frame_bytes": "big"})
    with pytest.raises(ValueError, match="max_log_bytes"):
        Limits.from_init({"max_log_bytes": 0})


class FakeChannel(Channel):
    def __init__(self) -> None:
        super().__init__(fd=-1, max_frame_bytes=1 << 20)
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_log_sink_splits_lines_and_caps_per_invocation() -> None:
    channel = FakeChannel()
    sink = LogSink(channel, max_log_bytes=10)
    sink.begin("a")
    sink.emit("info", "12345\n678\r\n")
    sink.emit("warn", "abcd")  # 5+3+0 used, 4 more does not fit: dropped, and so is everything after
    sink.emit("info", "z")
    assert [(m["id"], m["level"], m["message"]) for m in channel.sent] == [
        ("a", "info", "12345"), ("a", "info", "678"), ("a", "info", "")]
    sink.end_invocation(lambda dropped: {"type": "done", "dropped": dropped}, mute=False)
    assert channel.sent[-1] == {"type": "done", "dropped": 5}
    sink.emit("info", "after")
    assert channel.sent[-1]["id"] is None and channel.sent[-1]["message"] == "after"


def test_log_sink_chops_long_lines() -> None:
    channel = FakeChannel()
    sink = LogSink(channel, max_log_bytes=1 << 20)
    sink.emit("info", "x" * 40_000)
    assert [len(m["message"]) for m in channel.sent] == [16384, 16384, 40_000 - 32768]


def test_log_sink_counts_replacement_characters_not_raw_bytes() -> None:
    channel = FakeChannel()
    sink = LogSink(channel, max_log_bytes=100)
    sink.emit_line("error", b"\xff\xfe")
    assert channel.sent[0]["message"] == "\ufffd\ufffd"


def test_muted_sink_sends_nothing() -> None:
    channel = FakeChannel()
    sink = LogSink(channel, max_log_bytes=100)
    sink.begin("a")
    sink.end_invocation(lambda dropped: {"type": "done"}, mute=True)
    sink.emit("info", "late")
    assert channel.sent == [{"type": "done"}]
