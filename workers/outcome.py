"""The outcome of one attempt, as the runners produce it and the finish report sends it.

A runner never raises for a failure of the task itself: it returns ``Outcome.failed`` with the
traceback text, so that every kind of task (process pool, event loop, subprocess) ends the same way.
A sensor's poke that is not done yet ends in ``Outcome.reschedule()``: the service decides when it
pokes again, or that it timed out.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from typing import Any, Literal

from weir.sensors import read_poke

__all__ = ["Outcome"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    state: Literal["success", "failed", "reschedule"]
    result: Any = None
    error: str | None = None

    @classmethod
    def success(cls, result: Any) -> Outcome:
        """Success with ``result`` as the task's XCom, or a failure if it cannot be stored as JSON
        (checked strictly, so a downstream task receives exactly what this one returned)."""
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return cls.failed(
                f"The task returned a value of type {type(result).__name__} that is not "
                f"JSON-serialisable ({exc}). A task's return value is passed to downstream tasks "
                "as JSON: return dicts, lists, strings, numbers (not NaN or infinity), booleans "
                "or None, or write larger data elsewhere and return its location."
            )
        return cls("success", result=result)

    @classmethod
    def reschedule(cls) -> Outcome:
        """A sensor's "not yet": the worker frees its slot and the service pokes again later."""
        return cls("reschedule")

    @classmethod
    def of_poke(cls, returned: Any) -> Outcome:
        """How a sensor's poke ended, from what it returned (see ``weir.sensors``)."""
        is_done, value = read_poke(returned)
        return cls.success(value) if is_done else cls.reschedule()

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls("failed", error=error)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Outcome:
        """A failure whose error is the exception's full traceback text."""
        return cls.failed("".join(traceback.format_exception(exc)))
