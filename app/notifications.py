"""The failure notifier: POSTs a JSON summary of every run the scheduler failed to
``WEIR_NOTIFY_URL``, at least once, across restarts and replicas.

It is an outbox (``app.db.notifications``): the scheduler writes a ``notification`` row in the
transaction that fails the run and wakes this loop after the commit. The loop leases due rows,
POSTs each summary outside any transaction, deletes the row once the receiver answered 2xx, and
otherwise records the error and the next try (``retry_at``: exponential backoff), giving up
``notify_give_up_after`` seconds after the failure. Between sends it sleeps until the earliest
row is due, woken early by a new row; the safety sweep bounds that sleep, so a row another
replica leased and left behind (it crashed) is found once its lease lapses.

With ``WEIR_NOTIFY_SECRET`` the body is signed: ``X-Weir-Signature: sha256=<hex>`` is the
HMAC-SHA256 of the exact bytes sent, keyed with the secret, so a receiver can check that the
summary comes from Weir (compare with ``hmac.compare_digest``). ``X-Weir-Notification-Id`` is
the same on every try of one summary: a receiver dedupes on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.models import DagRun, TaskAttempt, TaskInstance
from app.db.notifications import (
    TakenNotification,
    delete_notification,
    next_notification_at,
    record_failed_send,
    take_due_notifications,
)
from app.db.outage import OUTAGE_RETRY, UNAVAILABLE
from app.scheduler.wakeup import Wakeup
from weir.clock import Clock
from weir.config import Settings
from weir.states import TaskState

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "FailureNotifier",
    "backoff",
    "load_failure_summary",
    "retry_at",
    "sign",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Weir-Signature"
ID_HEADER = "X-Weir-Notification-Id"
ERROR_CHARS = 4000
"""The end of each failed task's traceback that goes into the summary."""
REQUEST_TIMEOUT = 10.0  # well under the lease (``app.db.notifications.LEASE``)
BATCH = 20  # summaries sent at once
_RETRIED_STATUSES = frozenset({408, 429})


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try: 0.5, 1, 2, … up to 60."""
    return float(min(0.5 * 2 ** min(max(attempts - 1, 0), 16), 60.0))


def retry_at(
    created_at: datetime, attempts: int, now: datetime, give_up_after: float
) -> datetime | None:
    """When to try again after a failed try, or None to give up; the last try falls on the
    deadline itself, so a receiver back just before it still gets the summary."""
    deadline = created_at + timedelta(seconds=give_up_after)
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=backoff(attempts)), deadline)


class FailureNotifier:
    """One per service replica, and only when ``notify_url`` is set."""

    def __init__(
        self, settings: Settings, database: Database, clock: Clock, *, sweep_interval: float
    ) -> None:
        if settings.notify_url is None:
            raise ValueError("FailureNotifier needs WEIR_NOTIFY_URL")
        self._url = settings.notify_url
        secret = settings.notify_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        self._give_up_after = settings.notify_give_up_after
        self._base_url = settings.api_url.rstrip("/")
        self._database = database
        self._clock = clock
        self._sweep_interval = sweep_interval
        self.ready = Wakeup()
        """Notified by the scheduler after a commit that wrote rows."""

    async def run(self, stop: asyncio.Event) -> None:
        """Send due summaries until ``stop``; a send in flight finishes first (its row's lease
        covers a stop that cannot wait for it)."""
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
            while not stop.is_set():
                try:
                    if await self.send_due(http):
                        continue
                    timeout = await self._idle_timeout()
                except UNAVAILABLE:
                    timeout = OUTAGE_RETRY  # the outage is logged once, by app.db.outage
                except Exception:
                    log.exception("failure notifier failed; retrying after the next wake-up")
                    timeout = self._sweep_interval
                await self.ready.wait(timeout)

    async def send_due(self, http: httpx.AsyncClient) -> int:
        """Lease one batch of due rows and send them side by side; returns how many."""
        async with self._database.sessions.begin() as session:
            taken = await take_due_notifications(session, self._clock.now(), BATCH)
        await asyncio.gather(*(self._deliver(http, notification) for notification in taken))
        return len(taken)

    async def _idle_timeout(self) -> float:
        async with self._database.sessions() as session:
            due = await next_notification_at(session)
        if due is None:
            return self._sweep_interval
        wait = (due - self._clock.now()).total_seconds()
        return min(max(wait, 0.0), self._sweep_interval)

    async def _deliver(self, http: httpx.AsyncClient, taken: TakenNotification) -> None:
        """Send one summary and record the outcome; never raises (it would end the service's
        loops): what goes wrong is logged, and the row's lease brings it back."""
        try:
            async with self._database.sessions() as session:
                summary = await load_failure_summary(session, taken.dag_run_id, self._base_url)
            if summary is not None:
                await self._post(http, taken.id, json.dumps(summary).encode())
        except (httpx.HTTPError, OSError) as error:
            await self._record_failure(taken, error)
            return
        except UNAVAILABLE:
            return  # the outage is logged once (app.db.outage); the row's lease brings it back
        except Exception:
            log.exception("failure notification %s not sent; retried later", taken.id)
            return
        async with self._database.sessions.begin() as session:
            await delete_notification(session, taken.id)
        if summary is not None:
            log.info("Failure notification sent for dag_id=%s run_id=%s",
                     summary["dag_id"], summary["run_id"])  # fmt: skip

    async def _post(self, http: httpx.AsyncClient, notification_id: int, body: bytes) -> None:
        headers = {"Content-Type": "application/json", ID_HEADER: str(notification_id)}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        response = await http.post(self._url, content=body, headers=headers)
        response.raise_for_status()

    async def _record_failure(self, taken: TakenNotification, error: BaseException) -> None:
        now = self._clock.now()
        when = None
        if _is_retryable(error):
            when = retry_at(taken.created_at, taken.attempts, now, self._give_up_after)
        text = f"{type(error).__name__}: {error}"[:ERROR_CHARS]
        async with self._database.sessions.begin() as session:
            await record_failed_send(session, taken, text, when, now)
        if when is None:
            log.error("Failure notification %s for run %s given up after %d tries: %s",
                      taken.id, taken.dag_run_id, taken.attempts, text)  # fmt: skip
        else:
            log.warning("Failure notification %s: try %d failed (%s); next at %s",
                        taken.id, taken.attempts, text, when.isoformat())  # fmt: skip


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
    return isinstance(error, (httpx.TransportError, OSError))
