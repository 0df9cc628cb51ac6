"""What a ``@task.sensor`` returns, and how the worker reads it.

A sensor's poke answers one question, "is the condition met?": truthy means done (the value is
the task's return value), falsy means "not yet, poke again later". ``PokeReturnValue`` separates
the two when the value to pass downstream may itself be falsy (``0``, ``[]``, ``None``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["PokeReturnValue", "read_poke"]


@dataclasses.dataclass(frozen=True, slots=True)
class PokeReturnValue:
    """A poke's answer: ``is_done``, and the return value passed downstream once it is."""

    is_done: bool
    xcom_value: Any = None

    def __bool__(self) -> bool:
        return self.is_done


def read_poke(returned: Any) -> tuple[bool, Any]:
    """``(is_done, return value)`` of what a poke returned."""
    if isinstance(returned, PokeReturnValue):
        return returned.is_done, returned.xcom_value
    return bool(returned), returned
