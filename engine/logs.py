"""structlog set-up, decided once at start-up: JSON lines by default, or a console renderer.

Both the engine's own events and records of the standard `logging` module (aiohttp, asyncio) go
to stdout through the same renderer, so in JSON mode every log line is one JSON object.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

LogFormat = Literal["json", "console"]

#: Callables that see every event dict before it is rendered (the control plane copies handler
#: lines into its store through one). Each must be cheap and must not raise or block.
TAPS: list[Callable[[Mapping[str, Any]], None]] = []


def _tap(_logger: Any, _name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    for tap in TAPS:
        tap(event)
    return event


def configure(log_format: LogFormat = "json", level: str = "info") -> None:
    """Configure structlog and the stdlib root logger for the whole process."""
    renderer: structlog.types.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        exceptions: structlog.types.Processor = structlog.processors.dict_tracebacks
    else:
        # Colours only on a terminal: escape codes in a log file or pipeline are noise.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        exceptions = structlog.dev.set_exc_info
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            _tap,
            exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, timestamper],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.dict_tracebacks] if log_format == "json" else []),  # console renders exc_info
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries' info lines (aiohttp access logs are off anyway) are not the engine's business.
    root.setLevel(max(_LEVELS[level], logging.WARNING))
