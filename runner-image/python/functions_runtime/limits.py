"""Per-worker limits the engine sends in `init`, with the protocol's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Byte limits the runner enforces on what it sends; the engine checks them again."""

    #: Log text (UTF-8 bytes of `message`) sent per invocation; protects the engine's log pipeline.
    max_log_bytes: int = 64 * 1024
    #: Reply body size; above it the runner sends `error: "response_too_large"` (the engine answers 502).
    max_response_bytes: int = 4 * 1024 * 1024
    #: Any runner → engine line; the engine kills a worker that sends a longer one.
    max_frame_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_init(cls, raw: Any) -> Limits:
        """Read `init.limits`; missing keys keep their defaults, bad values raise ValueError naming the key."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"init.limits must be an object, got {type(raw).__name__}")
        values: dict[str, int] = {}
        for key in ("max_log_bytes", "max_response_bytes", "max_frame_bytes"):
            if key not in raw or raw[key] is None:
                continue
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"init.limits.{key} must be a positive integer, got {value!r}")
            values[key] = value
        return cls(**values)
