"""Calling a task's function: its arguments from the upstream results, the run context around the
call, and the outcome. Shared by the event loop (async and shell tasks) and pool processes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from weir.context import RunContext, current_context
from weir.messages import ClaimAccepted
from weir.task import Task
from workers.outcome import Outcome

__all__ = ["invoke", "invoke_in_loop", "run_context"]


def run_context(claim: ClaimAccepted) -> RunContext:
    """What ``weir.get_current_context()`` answers inside the task."""
    return RunContext(
        dag_id=claim.dag_id,
        run_id=claim.run_id,
        task_id=claim.task_id,
        attempt=claim.attempt,
        logical_date=claim.logical_date,
        data_interval_start=claim.data_interval_start,
        data_interval_end=claim.data_interval_end,
        conf=dict(claim.conf),
        params=dict(claim.params),
        map_index=claim.map_index,
    )


def invoke(task: Task, claim: ClaimAccepted) -> Outcome:
    """Call a sync function; whatever it raises becomes a failed outcome with its traceback."""
    try:
        args, kwargs = task.resolve_arguments(claim.inputs)
        with _running_as(claim):
            result = task.function(*args, **kwargs)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a task are failures too
        return _failure(exc)
    return _ended(task, result)


async def invoke_in_loop(task: Task, claim: ClaimAccepted) -> Outcome:
    """Call the function in the event loop, awaiting what it returns if that is awaitable.

    Cancellation of the caller propagates; a ``CancelledError`` the task raises on its own account
    is a failure like any other.
    """
    try:
        args, kwargs = task.resolve_arguments(claim.inputs)
        with _running_as(claim):
            result: Any = task.function(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
    except asyncio.CancelledError as exc:
        if _is_being_cancelled():
            raise
        return _failure(exc)
    except BaseException as exc:
        return _failure(exc)
    return _ended(task, result)


def _ended(task: Task, result: Any) -> Outcome:
    """A sensor's return value says whether it is done; any other task's is its result."""
    return Outcome.of_poke(result) if task.options.sensor else Outcome.success(result)


def _failure(exc: BaseException) -> Outcome:
    """A failed outcome whose traceback starts at the task's code, not at this module."""
    frame = exc.__traceback__
    if frame is not None and frame.tb_next is not None:
        exc = exc.with_traceback(frame.tb_next)
    return Outcome.from_exception(exc)


@contextmanager
def _running_as(claim: ClaimAccepted) -> Iterator[None]:
    token = current_context.set(run_context(claim))
    try:
        yield
    finally:
        current_context.reset(token)


def _is_being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
