import asyncio
import os
import socket


async def handler(context, event, callback):
    print(f"WORKER {socket.gethostname()}:{os.getpid()}", flush=True)
    await asyncio.sleep(60)
    return callback(None, "too late")
