"""JavaScript value semantics the contract is written in: truthiness and JSON.stringify."""

from __future__ import annotations

import json
import math
from typing import Any


def js_truthy(value: Any) -> bool:
    """Truthiness as JS sees it: None, False, 0, 0.0, "" and NaN are falsy; {} and [] are truthy."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)):
        return not (value == 0 or value != value)
    if isinstance(value, str):
        return value != ""
    return True


def to_json(value: Any) -> str:
    """Compact JSON like JSON.stringify: no spaces, non-ASCII kept, NaN/±Infinity become null.

    Raises TypeError for values JSON cannot represent (naming their type) and ValueError for
    circular structures.
    """
    try:
        return _dumps(value)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
    return _dumps(_finite(value))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    """Replace non-finite floats with None, as JSON.stringify does."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
