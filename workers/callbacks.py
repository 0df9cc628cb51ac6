"""Task callbacks (``on_success``, ``on_retry``, ``on_failure``), run by the worker once the
service has accepted the attempt's finish report.

Why after the report: the service decides what a failure means (another try or the end), and
``FinishAccepted.state`` carries that decision, so the worker calls ``on_retry`` or
``on_failure`` without guessing from ``retries``. A callback never changes the task's state:
whatever it raises is logged and dropped.

A callback is called as ``callback(context)`` with the attempt's ``RunContext`` (``error`` holds
the failure's traceback text), the way the task itself ran: an ``async def`` is awaited in the
event loop, anything else runs in a thread so that it does not stall heartbeats. The attempt is
finished, so its log is closed: what a callback prints or logs goes to the worker's own log
(logger ``workers.callbacks``). A callback gets ``CALLBACK_TIMEOUT`` seconds; a sync callback
that overruns is abandoned, but its thread runs on until it returns.

At most once: a callback runs in the worker that reported, after the report. If that worker dies
in between, the callback does not run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from weir.context import RunContext, current_context
from weir.messages import ClaimAccepted
from weir.task import Task
from workers.capture import capture_into
from workers.identity import attempt_label
from workers.invocation import run_context

__all__ = ["CALLBACK_TIMEOUT", "TaskLoader", "run_callback", "run_task_callback"]

logger = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 60.0
"""Seconds a callback may take before the worker stops waiting for it."""

_OPTION_OF_STATE = {"success": "on_success", "up_for_retry": "on_retry", "failed": "on_failure"}

TaskLoader = Callable[[ClaimAccepted], Awaitable[Task]]
"""``Runner.load_task``: an awaitable returning the claimed ``Task`` (cached import)."""


class _WorkerLogSink:
    """Sends a callback's output, line by line, to the worker's logger."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._pending = ""

    def write(self, text: str) -> None:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            logger.info("%s: callback output: %s", self._label, line)

    def close(self) -> None:
        if self._pending:
            self.write("\n")


async def run_task_callback(
    load_task: TaskLoader, claim: ClaimAccepted, state: str, error: str | None
) -> None:
    """Run the callback that ``state`` (the task instance's state after the report) calls for,
    if the task has one; never raises but for cancellation."""
    option = _OPTION_OF_STATE.get(state)
    if option is None:
        return
    label = attempt_label(claim)
    try:
        task = await load_task(claim)
    except Exception as exc:
        logger.warning("%s: cannot load the task to run its %s callback (%s)", label, option, exc)
        return
    callback = getattr(task.options, option)
    if callback is None:
        return
    context = dataclasses.replace(run_context(claim), error=error if state != "success" else None)
    await run_callback(callback, context, label, option)


async def run_callback(
    callback: Callable[..., Any], context: RunContext, label: str, option: str
) -> None:
    """Call ``callback(context)`` with a time limit, its output and errors logged; never raises
    but for cancellation. ``label`` and ``option`` say whose callback it is in the log."""
    sink = _WorkerLogSink(label)
    try:
        async with asyncio.timeout(CALLBACK_TIMEOUT):
            await _call(callback, context, sink)
    except TimeoutError:
        logger.error(
            "%s: %s callback still running after %g s; abandoned", label, option, CALLBACK_TIMEOUT
        )
    except Exception:
        logger.exception("%s: %s callback raised; the state is unchanged", label, option)
    else:
        logger.info("%s: %s callback done", label, option)
    finally:
        sink.close()


async def _call(callback: Callable[..., Any], context: RunContext, sink: _WorkerLogSink) -> None:
    """Await an async callback in the loop; run anything else in a thread. Both see the context
    through ``get_current_context()`` too, and print into ``sink``."""
    token = current_context.set(context)
    try:
        with capture_into(sink):
            if inspect.iscoroutinefunction(callback):
                await callback(context)
            else:
                result = await asyncio.to_thread(callback, context)
                if inspect.isawaitable(result):
                    await result
    finally:
        current_context.reset(token)
