"""Which handler shapes let the runner send `result` and `done` in one write (runner tailcall.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "runner-image" / "python"))
from functions_runtime.tailcall import returns_after_current_call  # noqa: E402

seen: list[bool] = []


def callback(*_args):
    seen.append(returns_after_current_call(sys._getframe(1)))


def returns_it():
    return callback(None, 1)


def last_statement():
    callback(None, 1)


def in_a_branch(flag=True):
    if flag:
        return callback(None)
    return 3


def code_after():
    callback(None)
    print("after")


def result_used():
    value = callback(None)
    return value


def in_a_loop():
    for _ in range(1):
        return callback(None)


def in_a_with():
    with open(__file__):
        return callback(None)


def in_try_with_finally_code():
    try:
        return callback(None)
    finally:
        print("finally")


@pytest.mark.parametrize("handler, tail", [
    (returns_it, True), (last_statement, True), (in_a_branch, True),
    (code_after, False), (result_used, False), (in_a_loop, False), (in_a_with, False),
    (in_try_with_finally_code, False),
])
def test_only_calls_in_tail_position_count(handler, tail, capsys):
    seen.clear()
    handler()
    assert seen == [tail]
