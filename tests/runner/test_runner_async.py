"""Async handlers: fresh loop per invocation; nothing scheduled survives the callback."""

from __future__ import annotations

import time
from typing import Callable

from runner_harness import RunnerHarness


def test_async_handler_runs_in_a_fresh_loop_each_time(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        SEEN = []
        async def handler(context, event, callback):
            await asyncio.sleep(0.01)
            loop = asyncio.get_running_loop()
            body = {"fresh": all(loop is not old for old in SEEN), "closed": all(old.is_closed() for old in SEEN)}
            SEEN.append(loop)
            return callback(None, body)
        """})
    first, second = runner.invoke("f"), runner.invoke("f")
    assert first.json() == second.json() == {"fresh": True, "closed": True}
    assert first.done["clean"] is True and second.done["clean"] is True
    assert first.logs == [] and second.logs == []  # the runner's own loop set-up is not logged


def test_async_handler_raising_is_a_500(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        async def handler(context, event, callback):
            await asyncio.sleep(0)
            raise ValueError("async boom")
        """})
    outcome = runner.invoke("f")
    assert outcome.status == 500 and outcome.json() == {"message": "async boom", "name": "ValueError"}
    assert outcome.done["clean"] is True


def test_async_sys_exit_is_a_500(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import sys
        async def handler(context, event, callback):
            sys.exit(1)
        """, "functions/ok.py": "async def handler(context, event, callback):\n    callback(None, 'ok')\n"})
    assert runner.invoke("f").json()["name"] == "SystemExit"
    assert runner.invoke("ok").body == "ok"


def test_callback_from_a_task_after_the_handler_returned(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        async def handler(context, event, callback):
            async def later():
                await asyncio.sleep(0.05)
                callback(None, "from task")
            asyncio.get_running_loop().create_task(later())
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "from task" and outcome.done["clean"] is True


def test_unhandled_error_in_a_fire_and_forget_task_is_a_500(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        async def handler(context, event, callback):
            async def boom():
                raise LookupError("task boom")
            asyncio.create_task(boom())
            await asyncio.sleep(5)
        """})
    outcome = runner.invoke("f")
    assert outcome.status == 500 and outcome.json() == {"message": "task boom", "name": "LookupError"}


def test_sync_handler_returning_a_coroutine_is_awaited(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        async def inner(callback):
            callback(None, "awaited")
        def handler(context, event, callback):
            return inner(callback)
        """})
    assert runner.invoke("f").body == "awaited"


def test_leftover_tasks_and_timers_never_run_after_the_callback(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio, pathlib
        async def handler(context, event, callback):
            marker = pathlib.Path(event["marker"])
            async def leftover():
                await asyncio.sleep(0.3)
                marker.write_text("task ran")
                print("LEFTOVER TASK RAN")
            def timer():
                marker.write_text("timer ran")
                print("LEFTOVER TIMER RAN")
            asyncio.create_task(leftover())
            asyncio.get_running_loop().call_later(0.1, timer)
            callback(None, "done")
            await asyncio.sleep(10)  # the handler itself is cancelled too
            print("HANDLER RESUMED")
        """, "functions/slow.py": """
        import time
        def handler(context, event, callback):
            time.sleep(0.6)
            callback(None, "slow")
        """})
    marker = runner.project / "marker.txt"
    outcome = runner.invoke("f", {"marker": str(marker)})
    assert outcome.body == "done" and outcome.done["clean"] is True
    later = runner.invoke("slow")  # long enough for any leftover to fire
    time.sleep(0.2)
    assert later.body == "slow"
    assert not marker.exists()
    all_messages = outcome.messages() + later.messages()
    assert not [m for m in all_messages if "RAN" in m or "RESUMED" in m]


def test_finally_blocks_of_cancelled_tasks_run_within_the_invocation(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        async def handler(context, event, callback):
            async def worker():
                try:
                    await asyncio.sleep(10)
                finally:
                    print("worker cleaned up")
            asyncio.create_task(worker())
            await asyncio.sleep(0)
            callback(None, "ok")
        """})
    outcome = runner.invoke("f")
    assert "worker cleaned up" in outcome.messages("info") and outcome.done["clean"] is True


def test_a_task_that_ignores_cancellation_makes_the_worker_unclean(
        make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        async def handler(context, event, callback):
            async def stubborn():
                while True:
                    try:
                        await asyncio.sleep(0.05)
                    except asyncio.CancelledError:
                        pass
            asyncio.create_task(stubborn(), name="stubborn")
            await asyncio.sleep(0)
            callback(None, "ok")
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "ok"
    assert outcome.done["clean"] is False and "tasks ignored cancellation" in outcome.done["reason"]
    assert "stubborn" in outcome.done["reason"]


def test_run_in_executor_threads_are_shut_down(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import asyncio
        async def handler(context, event, callback):
            value = await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2, 3])
            callback(None, value)
        """})
    outcome = runner.invoke("f")
    assert outcome.body == "6" and outcome.done["clean"] is True


def test_sync_handlers_see_the_same_asyncio_state_every_time(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/sync.py": """
        import asyncio
        async def compute():
            await asyncio.sleep(0)
            return 7
        def handler(context, event, callback):
            callback(None, asyncio.run(compute()))
        """, "functions/async_.py": "async def handler(context, event, callback):\n    callback(None, 'a')\n"})
    assert runner.invoke("sync").body == "7"
    assert runner.invoke("async_").body == "a"
    assert runner.invoke("sync").body == "7"
