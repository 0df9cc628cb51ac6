"""The run context: what a running task may ask about the attempt it is part of."""

from __future__ import annotations

import contextvars
import dataclasses
from datetime import datetime
from typing import Any

__all__ = ["RunContext", "get_current_context"]


@dataclasses.dataclass(frozen=True)
class RunContext:
    """As in Airflow: the run's logical date and data interval, the trigger's ``conf``, and the
    DAG's ``params`` merged with it (defaults overridden by what the trigger passed)."""

    dag_id: str
    run_id: str
    task_id: str
    attempt: int
    logical_date: datetime
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    conf: dict[str, Any]
    params: dict[str, Any]
    map_index: int = -1
    error: str | None = None
    """In an ``on_failure`` or ``on_retry`` callback: the failed attempt's traceback text."""


current_context: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "weir_run_context", default=None
)


def get_current_context() -> RunContext:
    """The context of the running task; raises ``RuntimeError`` outside a task."""
    context = current_context.get()
    if context is None:
        raise RuntimeError("get_current_context() is only available while a task runs.")
    return context
