"""The outcome of one attempt, as the runners produce it and the finish report sends it.

A runner never raises for a failure of the task itself: it returns ``Outcome.failed`` with the
traceback text, so that every kind of task (process pool, event loop, subprocess) ends the same way.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from typing import Any, Literal

__all__ = ["Outcome"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    state: Literal["success", "failed"]
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
    def failed(cls, error: str) -> Outcome:
        return cls("failed", error=error)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Outcome:
        """A failure whose error is the exception's full traceback text."""
        return cls.failed("".join(traceback.format_exception(exc)))
