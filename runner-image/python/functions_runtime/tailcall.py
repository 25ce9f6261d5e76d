"""Whether a call is the last thing its caller does before returning.

When a synchronous handler ends with `return callback(...)` (or `callback(...)` as its last
statement), nothing of the handler runs after the callback. The runner can then hold the `result`
frame for the microseconds until the handler returns and send it in one write with `done`: one
message less through the container runtime per invocation. Any other shape (code after the
callback, `finally` blocks with code, loops, `with`) is answered at once as before.
"""

from __future__ import annotations

import dis
import functools
from types import CodeType, FrameType

_RETURNS = (("RETURN_VALUE",), ("POP_TOP", "LOAD_CONST", "RETURN_VALUE"), ("POP_TOP", "RETURN_CONST"))


def returns_after_current_call(frame: FrameType) -> bool:
    """True if `frame` is inside a call whose result it returns (or drops before returning a constant)."""
    return _tail(frame.f_code, frame.f_lasti)


@functools.lru_cache(maxsize=4096)
def _tail(code: CodeType, lasti: int) -> bool:
    try:
        instructions = [i for i in dis.get_instructions(code) if i.opname != "NOP"]
    except Exception:  # noqa: BLE001  (an interpreter whose bytecode dis cannot read: never hold)
        return False
    # f_lasti is the call instruction or one of its inline caches: the last instruction at or before it.
    index = max((n for n, i in enumerate(instructions) if i.offset <= lasti), default=None)
    if index is None or not instructions[index].opname.startswith("CALL"):
        return False
    following = tuple(i.opname for i in instructions[index + 1:index + 4])
    return any(following[:len(shape)] == shape for shape in _RETURNS)
