"""The scheduler: wait for a wake-up, run each step in its own short transaction, repeat at once
while a step found work. No polling: the wait's timeout is the safety sweep period, shortened to
the next moment something falls due: a retry or sensor poke, a scheduled run, a running run's
``dagrun_timeout``, the earliest lease of a running attempt (so a dead worker's attempts run again
right after their lease lapses).

When the failure notifier is configured, each step's transaction also writes a ``notification``
row for every run it failed (``app.db.notifications``) and wakes the notifier after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.notifications import add_failure_notifications
from app.db.outage import OUTAGE_RETRY, UNAVAILABLE
from app.db.transitions import FINISHED_RUNS
from app.execution.tokens import AttemptTokens
from app.scheduler import backfills, dag_callbacks, due_runs, progress, queueing, run_starts, sweeps
from app.scheduler.versions import VersionCache
from app.scheduler.wakeup import Wakeup
from weir.clock import Clock
from weir.states import DagRunState

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

MIN_IDLE_WAIT = 0.05
"""Something past due that the last pass could not take (another transaction held its rows)
is tried again after this, not in a tight loop."""

LAPSE_CHECK = 1.0
"""While passes find work back to back, lapsed leases are looked for at most this often."""

Step = Callable[[AsyncSession, datetime], Awaitable[int]]


class Scheduler:
    def __init__(
        self,
        database: Database,
        tokens: AttemptTokens,
        clock: Clock,
        *,
        wakeup: Wakeup,
        outbox_ready: Wakeup,
        versions: VersionCache,
        sweep_interval: float,
        max_lost_attempts: int = 3,
        lease_seconds: float = 8.0,
        notifier_ready: Wakeup | None = None,
    ) -> None:
        self._database = database
        self._tokens = tokens
        self._clock = clock
        self._wakeup = wakeup
        self._outbox_ready = outbox_ready
        self._versions = versions
        self._sweep_interval = sweep_interval
        self._notifier_ready = notifier_ready  # set: failed runs get a notification row
        self._max_lost_attempts = max_lost_attempts
        self._lease_seconds = lease_seconds
        self._last_sweep: datetime | None = None
        self._next_lapse: datetime | None = None  # the earliest lease, as of the last idle wait
        self._steps: list[tuple[str, Step]] = [
            ("create_due_runs", lambda s, now: due_runs.create_due_runs(s, versions, now)),
            ("start_queued_runs", run_starts.start_queued_runs),
            ("advance_flagged_runs", self._advance),
            ("queue_due_retries_and_pokes", self._retries_and_pokes),
            ("queue_scheduled", self._queue_scheduled),
            ("fail_timed_out_runs", lambda s, now: sweeps.fail_timed_out_runs(s, versions, now)),
            ("complete_finished_backfills", backfills.complete_finished_backfills),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``; a failing step is logged and retried at the next wake-up."""
        while not stop.is_set():
            try:
                if await self.run_once():
                    continue
                timeout = await self._idle_timeout()
            except UNAVAILABLE:
                timeout = OUTAGE_RETRY  # the outage is logged once, by app.db.outage
            except Exception:
                log.exception("scheduler step failed; retrying after the next wake-up")
                timeout = self._sweep_interval
            await self._wakeup.wait(timeout)

    async def run_once(self) -> int:
        """Run every step once (and the zombie sweep when due); returns the work done."""
        done = 0
        for name, step in self._steps:
            async with self._database.sessions.begin() as session:
                now = self._clock.now()
                count = await step(session, now)
                count += await dag_callbacks.queue_dag_callbacks(session, self._versions, now)
                notifications = await self._add_notifications(session, now)
            if notifications and self._notifier_ready is not None:
                self._notifier_ready.notify()
            if count:
                log.debug("scheduler step %s did %d", name, count)
                done += count
        done += await self._sweep_if_due()
        if done:
            self._outbox_ready.notify()
        return done

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """For tests: run steps until none finds work."""
        total = 0
        for _ in range(max_rounds):
            done = await self.run_once()
            if not done:
                return total
            total += done
        raise RuntimeError("the scheduler did not become idle")

    async def _sweep_if_due(self) -> int:
        """Requeue lapsed attempts when the earliest lease seen while idle has passed, and at
        most every ``LAPSE_CHECK`` seconds while busy (a busy loop does not stop to look)."""
        now = self._clock.now()
        lapse_due = self._next_lapse is not None and self._next_lapse <= now
        period_due = self._last_sweep is None or (now - self._last_sweep).total_seconds() >= min(
            self._sweep_interval, LAPSE_CHECK
        )
        if not (lapse_due or period_due):
            return 0
        if not self._database.outage.has_been_up_for(self._lease_seconds):
            return 0  # leases could not be renewed during the outage: give workers a lease
        self._last_sweep, self._next_lapse = now, None
        async with self._database.sessions.begin() as session:
            return await sweeps.requeue_lapsed_attempts(session, now, self._max_lost_attempts)

    async def _add_notifications(self, session: AsyncSession, now: datetime) -> int:
        """In the step's transaction: a notification row per run this step failed."""
        if self._notifier_ready is None:
            return 0
        finished: dict[int, DagRunState] = session.info.get(FINISHED_RUNS) or {}
        failed = [run_id for run_id, state in finished.items() if state is DagRunState.FAILED]
        return await add_failure_notifications(session, failed, now)

    async def _idle_timeout(self) -> float:
        async with self._database.sessions() as session:
            self._next_lapse = await sweeps.next_lease_lapse_at(session)
            due = [
                await sweeps.next_retry_or_poke_at(session),
                await due_runs.next_due_at(session),
                await sweeps.next_run_timeout_at(session, self._versions),
                self._next_lapse,
            ]
        timeout = self._sweep_interval
        for moment in filter(None, due):
            timeout = min(timeout, (moment - self._clock.now()).total_seconds())
        return max(timeout, MIN_IDLE_WAIT)

    async def _advance(self, session: AsyncSession, now: datetime) -> int:
        return await progress.advance_flagged_runs(session, self._versions, self._tokens, now)

    async def _retries_and_pokes(self, session: AsyncSession, now: datetime) -> int:
        return await sweeps.queue_due_retries_and_pokes(session, self._tokens, now)

    async def _queue_scheduled(self, session: AsyncSession, now: datetime) -> int:
        return await queueing.queue_scheduled(session, self._tokens, now)
