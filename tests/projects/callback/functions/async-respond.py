"""An `async def` handler, picked by `event["mode"]`."""

import asyncio


async def handler(context, event, callback):
    mode = event.get("mode")
    loop = asyncio.get_running_loop()
    if mode == "text":
        await asyncio.sleep(0.01)
        return callback(None, "async fine")
    if mode == "raise":
        await asyncio.sleep(0.01)
        raise ValueError("async bad")
    if mode == "call-later":
        loop.call_later(0.2, callback, None, "from call_later")
        return None
    if mode == "await-future":
        future = loop.create_future()
        loop.call_later(0.1, future.set_result, "resolved")
        return callback(None, await future)
    if mode == "task-raises":
        async def boom():
            await asyncio.sleep(0.05)
            raise LookupError("uncaught in a task")
        asyncio.create_task(boom())
        return None
    if mode == "task-calls-back":
        async def later():
            await asyncio.sleep(0.1)
            callback(None, "from a task")
        asyncio.create_task(later())
        return None
    return callback(f"unknown mode {mode!r}")
