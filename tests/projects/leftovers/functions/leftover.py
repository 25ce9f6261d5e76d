"""Schedules work that must never run once the callback has been called.

Module globals live as long as the worker: `FIRED` shows whether leftover work ran on this worker,
`WORKER` tells workers apart (host name and pid differ per container/process; the uuid per load).
"""

import asyncio
import os
import socket
import threading
import time
import uuid

WORKER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
FIRED = []


def fire(tag):
    FIRED.append(tag)
    print(f"LEFTOVER FIRED {tag}", flush=True)


async def fire_later(tag, delay):
    await asyncio.sleep(delay)
    fire(tag)


async def stubborn(tag, delay):
    """Ignores cancellation and keeps going."""
    end = time.monotonic() + delay
    while time.monotonic() < end:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue
    fire(tag)


def state():
    return {"worker": WORKER, "fired": list(FIRED)}


async def handler(context, event, callback):
    mode = event.get("mode")
    tag = event.get("tag", "")
    delay = float(event.get("delay", "0.5"))
    loop = asyncio.get_running_loop()
    if mode == "state":
        return callback(None, state())
    if mode == "sleep-then-state":
        await asyncio.sleep(float(event.get("seconds", "1.5")))
        return callback(None, state())
    if mode == "task-after-callback":
        callback(None, state())
        asyncio.create_task(fire_later(tag, delay))
        return None
    if mode == "task-before-callback":
        asyncio.create_task(fire_later(tag, delay))
        return callback(None, state())
    if mode == "call-later-after-callback":
        callback(None, state())
        loop.call_later(delay, fire, tag)
        return None
    if mode == "call-soon-after-callback":
        callback(None, state())
        loop.call_soon(fire, tag)
        return None
    if mode == "executor-after-callback":
        callback(None, state())
        loop.run_in_executor(None, lambda: (time.sleep(delay), fire(tag)))
        return None
    if mode == "timer-after-callback":
        callback(None, state())
        threading.Timer(delay, fire, args=(tag,)).start()
        return None
    if mode == "thread-before-callback":
        threading.Thread(target=lambda: (time.sleep(delay), fire(tag))).start()
        return callback(None, state())
    if mode == "daemon-thread-before-callback":
        threading.Thread(target=lambda: (time.sleep(delay), fire(tag)), daemon=True).start()
        return callback(None, state())
    if mode == "stubborn-task":
        asyncio.create_task(stubborn(tag, delay))
        return callback(None, state())
    return callback(f"unknown mode {mode!r}")
