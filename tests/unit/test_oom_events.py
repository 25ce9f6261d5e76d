"""The late-`oom`-event wait (the daemon's event stream itself is exercised by the memory-bomb tests)."""

import threading
import time

from engine.backends.docker_oom import OomEvents


def test_an_oom_event_that_lands_after_the_exit_is_still_seen():
    events = OomEvents(lambda: None, "label=x")
    threading.Timer(0.05, events._note, args=("abc",)).start()
    assert events.killed_for_memory("abc", wait_s=2)


def test_no_event_means_no_oom_after_the_wait():
    events = OomEvents(lambda: None, "label=x")
    started = time.monotonic()
    assert not events.killed_for_memory("abc", wait_s=0.1)
    assert time.monotonic() - started >= 0.1


def test_only_the_latest_ids_are_remembered():
    events = OomEvents(lambda: None, "label=x")
    for number in range(2000):
        events._note(str(number))
    assert events.killed_for_memory("1999", wait_s=0) and not events.killed_for_memory("0", wait_s=0)
