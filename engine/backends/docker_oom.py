"""Which of this engine's containers the daemon reported as killed for memory.

`State.OOMKilled` is not enough: the daemon sets it only when containerd's OOM event arrives before
the exit event, and under load (seen with gVisor) it can arrive tens of milliseconds after. The
daemon still publishes the late `oom` event, so a thread follows the event stream (filtered to this
engine's label) and remembers the ids; a worker that died of SIGKILL the engine did not send is
checked against them, with a short wait for the event to land.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import structlog

log = structlog.get_logger("engine.docker")

#: How long a worker killed by a SIGKILL the engine did not send waits for a late `oom` event.
LATE_OOM_WAIT_S = 1.0
REMEMBERED = 1024  # ids kept; a worker's exit is examined within seconds of its death


class OomEvents:
    """A background follower of the daemon's `oom` events for containers with one label."""

    def __init__(self, connect: Callable[[], Any], label: str) -> None:
        self._connect = connect  # -> a docker.APIClient of its own (the stream holds its connection)
        self._label = label
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="docker-oom-events", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001  (already closed, or the daemon went away)
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)

    def killed_for_memory(self, container_id: str, wait_s: float = LATE_OOM_WAIT_S) -> bool:
        """True once an `oom` event for the container is known; waits up to wait_s for a late one."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            while container_id not in self._seen:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._changed.wait(left)
            return True

    def _note(self, container_id: str) -> None:
        with self._changed:
            self._seen[container_id] = None
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            self._changed.notify_all()

    def _follow(self) -> None:
        since = int(time.time()) - 1
        api = None
        while not self._stop.is_set():
            try:
                if api is None:
                    api = self._connect()
                opened = int(time.time()) - 1
                self._stream = api.events(since=since, decode=True,
                                          filters={"type": "container", "event": "oom", "label": self._label})
                since = opened  # a re-opened stream replays from here: nothing in between is missed
                if self._stop.is_set():
                    break
                for event in self._stream:
                    container_id = event.get("id") or (event.get("Actor") or {}).get("ID")
                    if container_id:
                        self._note(container_id)
            except Exception as exc:  # noqa: BLE001  (daemon restarted or unreachable: re-open)
                if self._stop.is_set():
                    break
                log.debug("docker_oom_events_reopen", error=str(exc)[:200])
                api = None
            finally:
                self._stream = None
            self._stop.wait(1.0)  # the stream ended (daemon restart): re-open, at most once a second
        if api is not None:
            try:
                api.close()
            except Exception:  # noqa: BLE001
                pass

