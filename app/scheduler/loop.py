"""The scheduler: wait for a wake-up, run each step in its own short transaction, repeat at once
while a step found work. No polling: the wait's timeout is the safety sweep period, shortened to
the next due retry or scheduled run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.transitions import FINISHED_RUNS
from app.execution.tokens import AttemptTokens
from app.scheduler import backfills, dag_callbacks, due_runs, progress, run_starts, sweeps
from app.scheduler.versions import VersionCache
from app.scheduler.wakeup import Wakeup
from weir.clock import Clock
from weir.states import DagRunState

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

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
        on_failed_runs: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._database = database
        self._tokens = tokens
        self._clock = clock
        self._wakeup = wakeup
        self._outbox_ready = outbox_ready
        self._versions = versions
        self._sweep_interval = sweep_interval
        self._on_failed_runs = on_failed_runs  # the failure notifier, told after each commit
        self._last_sweep: datetime | None = None
        self._steps: list[tuple[str, Step]] = [
            ("create_due_runs", lambda s, now: due_runs.create_due_runs(s, versions, now)),
            ("start_queued_runs", run_starts.start_queued_runs),
            ("advance_flagged_runs", self._advance),
            ("schedule_due_retries", self._retries),
            ("queue_scheduled", self._queue_scheduled),
            ("fail_timed_out_runs", lambda s, now: sweeps.fail_timed_out_runs(s, versions, now)),
            ("complete_finished_backfills", backfills.complete_finished_backfills),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``; a failing step is logged and retried at the next wake-up."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("scheduler step failed; retrying after the next wake-up")
                busy = 0
            if busy:
                continue
            await self._wakeup.wait(await self._idle_timeout())

    async def run_once(self) -> int:
        """Run every step once (and the zombie sweep when due); returns the work done."""
        done = 0
        for name, step in self._steps:
            async with self._database.sessions.begin() as session:
                now = self._clock.now()
                count = await step(session, now)
                count += await dag_callbacks.queue_dag_callbacks(session, self._versions, now)
            self._tell_notifier(session.info.get(FINISHED_RUNS, {}))
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
        now = self._clock.now()
        if self._last_sweep and (now - self._last_sweep).total_seconds() < self._sweep_interval:
            return 0
        self._last_sweep = now
        async with self._database.sessions.begin() as session:
            return await sweeps.fail_zombies(session, now)

    def _tell_notifier(self, finished: dict[int, DagRunState]) -> None:
        """After the commit: hand the runs that failed to the failure notifier."""
        failed = [run_id for run_id, state in finished.items() if state is DagRunState.FAILED]
        if failed and self._on_failed_runs is not None:
            self._on_failed_runs(failed)

    async def _idle_timeout(self) -> float:
        async with self._database.sessions() as session:
            due = [await sweeps.next_retry_at(session), await due_runs.next_due_at(session)]
        timeout = self._sweep_interval
        for moment in filter(None, due):
            timeout = min(timeout, (moment - self._clock.now()).total_seconds())
        return max(timeout, 0.0)

    async def _advance(self, session: AsyncSession, now: datetime) -> int:
        return await progress.advance_flagged_runs(session, self._versions, self._tokens, now)

    async def _retries(self, session: AsyncSession, now: datetime) -> int:
        return await sweeps.schedule_due_retries(session, self._tokens, now)

    async def _queue_scheduled(self, session: AsyncSession, now: datetime) -> int:
        return await sweeps.queue_scheduled(session, self._tokens, now)
