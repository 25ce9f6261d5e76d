"""Protocol framing as pure functions: messages ↔ bytes, with the size rules of docs/protocol.md.

No I/O here, so every rule (frame cap, UTF-8-safe chunking, the `result` fallbacks) is unit-tested
on its own.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

#: Longest log message the runner sends; longer lines are chopped so no frame gets huge.
LOG_CHUNK_BYTES = 16 * 1024


class FrameTooLarge(ValueError):
    """An outgoing message would exceed `limits.max_frame_bytes`."""


class BadFrame(ValueError):
    """An incoming line is not a JSON object with a string `type`."""


def encode_frame(message: dict[str, Any], max_bytes: int) -> bytes:
    """One JSON line; lone surrogates become '?' so the frame is always valid UTF-8."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    data = text.encode("utf-8", "replace") + b"\n"
    if len(data) > max_bytes:
        raise FrameTooLarge(f"{message.get('type')} frame of {len(data)} bytes exceeds {max_bytes}")
    return data


def decode_line(line: bytes) -> dict[str, Any]:
    """Parse one engine → runner line; BadFrame says what is wrong with it."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadFrame(f"not a JSON line: {exc}") from None
    if not isinstance(message, dict):
        raise BadFrame(f"expected a JSON object, got {type(message).__name__}")
    if not isinstance(message.get("type"), str):
        raise BadFrame("message has no string `type`")
    return message


def utf8_cut(data: bytes, limit: int) -> int:
    """The largest index ≤ limit that does not split a UTF-8 sequence (always > 0 for limit ≥ 4)."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut or limit


def utf8_chunks(data: bytes, max_bytes: int) -> Iterator[bytes]:
    """Split bytes into pieces of at most max_bytes without splitting a character; b'' yields b''."""
    if not data:
        yield b""
        return
    while data:
        cut = utf8_cut(data, max_bytes)
        yield data[:cut]
        data = data[cut:]


def log_frame(invocation_id: Any, level: str, message: str) -> dict[str, Any]:
    """A `log` message; `invocation_id` is None for output outside an invocation."""
    return {"type": "log", "id": invocation_id, "level": level, "message": message}


@dataclass
class Reply:
    """An HTTP reply as the runner computed it: status, header pairs, and a text or binary body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | bytes = ""

    def body_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return self.body.encode("utf-8", "replace")


def result_frame(invocation_id: Any, reply: Reply, max_response_bytes: int, max_frame_bytes: int) -> bytes:
    """The `result` line for a reply.

    Bodies over max_response_bytes become `error: "response_too_large"`. Text whose JSON escaping
    would overflow the frame travels base64-encoded instead; if even that does not fit (huge
    headers), the reply is reported as too large too, with the size that did not fit.
    """
    raw = reply.body_bytes()
    if len(raw) > max_response_bytes:
        return encode_frame(too_large_message(invocation_id, len(raw)), max_frame_bytes)
    message: dict[str, Any] = {
        "type": "result", "id": invocation_id, "status": reply.status,
        "headers": [[name, value] for name, value in reply.headers], "error": None,
    }
    if isinstance(reply.body, str):
        try:
            return encode_frame({**message, "body": reply.body, "body_encoding": "utf-8"}, max_frame_bytes)
        except FrameTooLarge:
            pass
    encoded = base64.b64encode(raw).decode("ascii")
    try:
        return encode_frame({**message, "body": encoded, "body_encoding": "base64"}, max_frame_bytes)
    except FrameTooLarge:
        header_bytes = sum(len(n.encode("utf-8", "replace")) + len(v.encode("utf-8", "replace")) for n, v in reply.headers)
        return encode_frame(too_large_message(invocation_id, len(raw) + header_bytes), max_frame_bytes)


def too_large_message(invocation_id: Any, size: int) -> dict[str, Any]:
    """The `result` for an oversized reply: no headers, empty body, the size that did not fit."""
    return {
        "type": "result", "id": invocation_id, "status": 502, "headers": [], "body": "",
        "body_encoding": "utf-8", "error": "response_too_large", "size": size,
    }
