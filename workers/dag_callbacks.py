"""DAG-level callbacks (``@dag(on_success=…, on_failure=…)``), run by a worker when the service
sends a ``DagCallbackMessage`` (``app.scheduler.dag_callbacks``) for a run that just ended.

``DagCallbackHandler.handle`` sits in front of the attempt handler and parses each message once,
as the union of what a worker's queue carries (``weir.messages.WorkerMessage``): a DAG callback is
run here, a task message goes on to ``AttemptHandler.handle`` already parsed, and a message that
is neither is dead-lettered (invariant 7). At least once: a DAG callback's message is acked only
after the callback returned (or raised, which is logged), so a worker that dies meanwhile leaves
it to be delivered again; a callback may therefore run twice.

The context is a ``RunContext`` with an empty ``task_id`` and ``attempt`` 0 (no task is
running); for ``on_failure``, ``error`` names the failed tasks.
"""

from __future__ import annotations

import asyncio
import logging
import reprlib
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from weir.broker import Delivery
from weir.context import RunContext
from weir.dag import Dag
from weir.messages import DagCallbackMessage, TaskMessage, parse_worker_message
from workers.callbacks import run_callback

__all__ = ["DagCallbackHandler"]

logger = logging.getLogger(__name__)

DagLoader = Callable[[str, str, str], Awaitable[dict[str, Dag]]]
"""``Runner.load_dags(fileloc, file_hash, label)``."""
TaskHandler = Callable[[Delivery, TaskMessage], Awaitable[None]]
"""``AttemptHandler.handle``: sees a task message's attempt through."""


class DagCallbackHandler:
    """Parses each message once; runs DAG callbacks and hands task messages to ``next_handler``."""

    def __init__(
        self, load_dags: DagLoader, next_handler: TaskHandler, stop: asyncio.Event
    ) -> None:
        self._load_dags = load_dags
        self._next = next_handler
        self._stop = stop

    async def handle(self, delivery: Delivery) -> None:
        """Never raises but for cancellation (then the message is not acked: it comes back)."""
        try:
            message = parse_worker_message(delivery.body)
        except ValidationError as exc:
            await _dead_letter(delivery, exc)
            return
        if isinstance(message, TaskMessage):
            await self._next(delivery, message)
            return
        label = f"{message.dag_id}/{message.run_id}"
        try:
            if self._stop.is_set():
                logger.info("%s: stopping, returning the DAG callback to its queue", label)
                await delivery.nack()
                return
            await self._run(message, label)
            await delivery.ack()
        except Exception:
            logger.exception("%s: unexpected error handling a DAG callback", label)

    async def _run(self, message: DagCallbackMessage, label: str) -> None:
        try:
            dags = await self._load_dags(message.fileloc, message.file_hash, label)
            callback = getattr(dags[message.dag_id].options, message.callback)
        except Exception as exc:
            what = f"DAG {message.dag_id}'s {message.callback} callback"
            logger.error("%s: cannot load %s (%s)", label, what, exc)
            return
        if callback is None:
            logger.info("%s: DAG no longer has an %s callback", label, message.callback)
            return
        await run_callback(callback, _context(message), label, f"DAG {message.callback}")


async def _dead_letter(delivery: Delivery, error: ValidationError) -> None:
    """Neither a task's nor a DAG callback's message: kept where an operator can see it."""
    logger.error(
        "Dead-lettering an unparseable message from queue %s (%s): %s",
        delivery.queue,
        reprlib.repr(delivery.body),
        error,
    )
    try:
        await delivery.dead_letter()
    except Exception as exc:
        logger.warning("Could not dead-letter a message from queue %s (%s)", delivery.queue, exc)


def _context(message: DagCallbackMessage) -> RunContext:
    return RunContext(
        dag_id=message.dag_id,
        run_id=message.run_id,
        task_id="",
        attempt=0,
        logical_date=message.logical_date,
        data_interval_start=message.data_interval_start,
        data_interval_end=message.data_interval_end,
        conf=dict(message.conf),
        params=dict(message.params),
        error=message.error,
    )
