"""The failure notifier: POSTs a JSON summary of every failed DAG run to ``WEIR_NOTIFY_URL``.

The scheduler never waits for it: a step that fails a run records the run's id on its session
(``app.db.transitions.FAILED_RUNS``), the scheduler loop hands the ids over after the commit
(``notify``, a queue put), and this loop sends each summary in a task of its own, retried with
exponential backoff on connection errors, 5xx, 408 and 429 for ``notify_give_up_after`` seconds.

With ``WEIR_NOTIFY_SECRET`` the body is signed: ``X-Weir-Signature: sha256=<hex>`` is the
HMAC-SHA256 of the exact bytes sent, keyed with the secret, so a receiver can check that the
summary comes from Weir (compare with ``hmac.compare_digest``).

At most once across restarts: the queue is in memory, so the summaries of runs that failed just
before a crash, or still being retried at shutdown, are not sent (each loss is logged). A durable
outbox would need a schema change; the run itself, and its state in the API, are not affected.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from app.db.engine import Database
from app.db.models import DagRun, TaskAttempt, TaskInstance
from weir.config import Settings
from weir.states import TaskState

__all__ = ["SIGNATURE_HEADER", "FailureNotifier", "load_failure_summary", "sign"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Weir-Signature"
ERROR_CHARS = 4000
"""The end of each failed task's traceback that goes into the summary."""
_RETRIED_STATUSES = frozenset({408, 429})


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FailureNotifier:
    """One per service replica, and only when ``notify_url`` is set."""

    def __init__(self, settings: Settings, database: Database) -> None:
        if settings.notify_url is None:
            raise ValueError("FailureNotifier needs WEIR_NOTIFY_URL")
        self._url = settings.notify_url
        secret = settings.notify_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        self._give_up_after = settings.notify_give_up_after
        self._base_url = settings.api_url.rstrip("/")
        self._database = database
        self._queue: asyncio.Queue[int] = asyncio.Queue()

    def notify(self, dag_run_ids: Iterable[int]) -> None:
        """Queue the summaries of these failed runs; returns at once (called by the scheduler)."""
        for dag_run_id in dag_run_ids:
            self._queue.put_nowait(dag_run_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Send queued summaries until ``stop``; then abandon what is still being retried."""
        sending: dict[asyncio.Task[None], int] = {}
        async with httpx.AsyncClient(timeout=10.0) as http, asyncio.TaskGroup() as group:
            while (dag_run_id := await self._next(stop)) is not None:
                task = group.create_task(self._send(http, dag_run_id))
                sending[task] = dag_run_id
                task.add_done_callback(sending.pop)
            lost = [*sending.values(), *_drain(self._queue)]
            if lost:
                log.warning("Stopping: failure notifications not sent for run(s) %s", lost)
            for task in list(sending):
                task.cancel()

    async def _next(self, stop: asyncio.Event) -> int | None:
        if stop.is_set():
            return None
        getting = asyncio.ensure_future(self._queue.get())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if getting.done():
            return getting.result()
        getting.cancel()
        return None

    async def _send(self, http: httpx.AsyncClient, dag_run_id: int) -> None:
        """Build and POST one summary; a failure is logged, never raised (it would end the
        service's loops)."""
        try:
            async with self._database.sessions() as session:
                summary = await load_failure_summary(session, dag_run_id, self._base_url)
            if summary is None:
                return
            await self._post(http, json.dumps(summary).encode())
        except Exception as exc:
            log.error("Failure notification for run %s not sent: %s", dag_run_id, exc)
        else:
            log.info("Failure notification sent for %s %s", summary["dag_id"], summary["run_id"])

    async def _post(self, http: httpx.AsyncClient, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._give_up_after),
            wait=wait_exponential(multiplier=0.5, max=60),
            retry=retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await http.post(self._url, content=body, headers=headers)
                response.raise_for_status()


async def load_failure_summary(
    session: AsyncSession, dag_run_id: int, base_url: str
) -> dict[str, Any] | None:
    """What the notifier sends: the run, and its failed tasks with their last error."""
    run = await session.get(DagRun, dag_run_id)
    if run is None:  # deleted since (retention)
        return None
    rows = await session.execute(
        select(
            TaskInstance.task_id, TaskInstance.map_index, TaskInstance.attempt, TaskAttempt.error
        )
        .outerjoin(
            TaskAttempt,
            (TaskAttempt.task_instance_id == TaskInstance.id)
            & (TaskAttempt.attempt == TaskInstance.attempt),
        )
        .where(TaskInstance.dag_run_id == dag_run_id, TaskInstance.state == TaskState.FAILED)
        .order_by(TaskInstance.task_id, TaskInstance.map_index)
    )
    path = f"/api/v1/dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}"
    return {
        "event": "dag_run.failed",
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "run_type": run.run_type,
        "logical_date": run.logical_date.isoformat(),
        "start_date": run.start_date.isoformat() if run.start_date else None,
        "end_date": run.end_date.isoformat() if run.end_date else None,
        "state": str(run.state),
        "failed_tasks": [
            {
                "task_id": row.task_id,
                "map_index": row.map_index,
                "attempts": row.attempt,
                "error": row.error[-ERROR_CHARS:] if row.error else None,
            }
            for row in rows
        ],
        "url": base_url + path,
        "dashboard_url": base_url + "/",
    }


def _is_retryable(error: BaseException) -> bool:
    """Connection trouble and server-side errors pass; a 4xx other than 408/429 will not."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status in _RETRIED_STATUSES
    return isinstance(error, httpx.TransportError)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "Failure notification: attempt %d failed (%s); retrying in %.1f s",
        state.attempt_number,
        error,
        wait,
    )


def _drain(queue: asyncio.Queue[int]) -> list[int]:
    drained = []
    while not queue.empty():
        drained.append(queue.get_nowait())
    return drained
