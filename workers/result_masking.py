"""A task's return value with the secrets it fetched masked, as its log and traceback are.

The return value is stored as the task's XCom and shown to anyone who may read the run (viewers
included), so a secret in it would reach people who are refused the connection or variable it
came from. Downstream tasks receive the masked value too: pass a secret's name, never its value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["mask_result"]


def mask_result(value: Any, mask: Callable[[str], str]) -> Any:
    """``value`` (JSON-serialisable) with ``mask`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list | tuple):
        return [mask_result(item, mask) for item in value]
    if isinstance(value, dict):
        return {
            mask(key) if isinstance(key, str) else key: mask_result(item, mask)
            for key, item in value.items()
        }
    return value
