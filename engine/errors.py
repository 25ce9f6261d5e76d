"""The engine's exceptions, as one tree. `http_front.py` is the one place that maps them to statuses.

    EngineError
    ├── ConfigError            bad settings or config file (start-up; names the key)
    ├── ProjectError           a project cannot be loaded (names the files)
    ├── StoreError             the control store cannot be used: bad URL, unreachable, schema (engine/control/store.py)
    ├── BackendError           a backend cannot do its job (docker gone, image build failed)
    │   └── ImageBuildError
    ├── WorkerError            a worker failed an invocation (→ 502)
    │   ├── ChannelClosed      its stdout ended (crash, kill, OOM)
    │   ├── ProtocolError      it broke the protocol (bad frame, wrong order)
    │   │   └── FrameTooLarge  a line over max_frame_bytes
    │   └── BootstrapError     it did not answer `init` with `ready` in time
    └── PoolError
        ├── PoolSaturated      queue full (→ 503 with Retry-After)
        ├── AcquireTimeout     no worker within the wait budget (→ 503)
        ├── WorkersUnavailable none alive and the last start failed (→ 503 at once)
        └── PoolClosed         engine shutting down (→ 503)

A handler's own error is not an exception here: it is a normal `result` with status 500.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    pass


class ProjectError(EngineError):
    pass


class BackendError(EngineError):
    pass


class ImageBuildError(BackendError):
    pass


class WorkerError(EngineError):
    pass


class ChannelClosed(WorkerError):
    pass


class ProtocolError(WorkerError):
    pass


class FrameTooLarge(ProtocolError):
    pass


class BootstrapError(WorkerError):
    pass


class PoolError(EngineError):
    retry_after_s: int = 1


class PoolSaturated(PoolError):
    pass


class AcquireTimeout(PoolError):
    pass


class WorkersUnavailable(PoolError):
    pass


class PoolClosed(PoolError):
    pass
