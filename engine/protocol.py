"""The worker protocol's messages and framing (docs/protocol.md). Pure: no I/O here."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from engine.errors import ProtocolError

PROTOCOL_VERSION = 1

Visibility = Literal["public", "protected", "private"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- engine → runner -------------------------------------------------------------------------


class FunctionEntry(_Message):
    name: str
    file: str
    url_path: str
    visibility: Visibility


class AssetEntry(_Message):
    url_path: str
    file: str
    visibility: Visibility


class Limits(_Message):
    max_log_bytes: int
    max_response_bytes: int
    max_frame_bytes: int


class Init(_Message):
    type: Literal["init"] = "init"
    protocol: int = PROTOCOL_VERSION
    service: str
    project_root: str
    functions: list[FunctionEntry]
    assets: list[AssetEntry]
    env: dict[str, str]
    limits: Limits
    dev_mode: bool = False


# --- runner → engine -------------------------------------------------------------------------


class Ready(_Message):
    type: Literal["ready"]
    protocol: int
    runtime: str = ""
    runtime_version: str = ""
    pid: int | None = None
    load_errors: dict[str, str] = Field(default_factory=dict)


class InitErrorMsg(_Message):
    type: Literal["init_error"]
    message: str


class Log(_Message):
    type: Literal["log"]
    id: str | None = None
    level: Literal["debug", "info", "warn", "error"] = "info"
    message: str = ""


class Result(_Message):
    type: Literal["result"]
    id: str
    status: int = Field(default=200, ge=100, le=599)
    headers: list[tuple[str, str]] = Field(default_factory=list)
    body: str = ""
    body_encoding: Literal["utf-8", "base64"] = "utf-8"
    error: Literal["response_too_large"] | None = None
    size: int | None = None

    def body_bytes(self) -> bytes:
        if self.body_encoding == "base64":
            try:
                return base64.b64decode(self.body, validate=True)
            except ValueError as exc:
                raise ProtocolError(f"result {self.id}: body is not valid base64") from exc
        return self.body.encode("utf-8")


class Done(_Message):
    type: Literal["done"]
    id: str
    clean: bool
    reason: str | None = None
    log_bytes_dropped: int = 0


RunnerMessage = Annotated[Union[Ready, InitErrorMsg, Log, Result, Done], Field(discriminator="type")]
_runner_message = TypeAdapter(RunnerMessage)


def decode(line: bytes) -> Ready | InitErrorMsg | Log | Result | Done:
    """Parse one line from a runner; anything malformed is a ProtocolError naming the problem."""
    try:
        return _runner_message.validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProtocolError(f"bad message from worker ({where}: {first['msg']}): {line[:200]!r}") from exc


def encode_init(message: Init) -> bytes:
    return message.model_dump_json().encode() + b"\n"


# Invocation frames are built by hand: the event is already plain JSON-able data and this is the
# hot path, so one json.dumps beats building and dumping a model.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_invoke(invocation_id: str, function: str, event: dict[str, Any], context: dict[str, str]) -> bytes:
    frame = {"type": "invoke", "id": invocation_id, "function": function, "event": event, "context": context}
    return _dumps(frame).encode("utf-8") + b"\n"
