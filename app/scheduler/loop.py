"""The scheduler: wait for a wake-up, do what it calls for, wait again. No polling.

A pass has two parts:

- The event-driven steps, in one transaction: start queued runs, advance the runs whose tasks
  changed, queue what waits for capacity. A finished task, a trigger, a clear all lead here, and
  each of these steps touches only what changed (flagged runs, queued runs, waiting tasks), so a
  pass costs the same whether ten runs exist or ten thousand.
- The periodic steps (scheduled runs falling due, retries and sensor pokes, run timeouts,
  finished backfills, lapsed leases), each on its own deadline: it runs when its next moment has
  come, not on every wake-up. Deadlines are read from the database after a full wake-up (see
  ``wakeup``), after the pass itself started runs, and otherwise at most every
  ``DEADLINE_REFRESH``; every ``sweep_interval`` everything runs as a safety net.

The wait's timeout is the earliest deadline. A lease taken after the deadlines were read lapses
no sooner than ``lease_seconds`` after that read, so a dead worker's attempts run again right
after their lease lapses without the scheduler re-reading leases on every pass.

When the failure notifier is configured, each transaction also writes a ``notification`` row for
every run it failed (``app.db.notifications``) and wakes the notifier after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.effects import effects_of
from app.db.engine import Database
from app.db.notifications import add_failure_notifications
from app.db.outage import OUTAGE_RETRY, UNAVAILABLE
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
"""While passes follow each other back to back, lapsed leases are looked for at most this often."""

DEADLINE_REFRESH = 0.25
"""With only hot wake-ups (tasks succeeding), the periodic steps' deadlines are read at most this
often: a DAG unpaused or a retry scheduled wakes the scheduler fully and is read at once."""

Step = Callable[[AsyncSession, datetime], Awaitable[int]]
NextAt = Callable[[AsyncSession], Awaitable[datetime | None]]


@dataclass(frozen=True, slots=True)
class Periodic:
    """A step that runs when its next moment (``next_at``) has come."""

    name: str
    run: Step
    next_at: NextAt


class Scheduler:
    def __init__(
        self,
        database: Database,
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
        self._clock = clock
        self._wakeup = wakeup
        self._outbox_ready = outbox_ready
        self._versions = versions
        self._sweep_interval = sweep_interval
        self._notifier_ready = notifier_ready  # set: failed runs get a notification row
        self._max_lost_attempts = max_lost_attempts
        self._lease_seconds = lease_seconds
        self._periodic = [
            Periodic(
                "create_due_runs",
                lambda s, now: due_runs.create_due_runs(s, versions, now),
                due_runs.next_due_at,
            ),
            Periodic(
                "queue_due_retries_and_pokes",
                sweeps.queue_due_retries_and_pokes,
                sweeps.next_retry_or_poke_at,
            ),
            Periodic(
                "fail_timed_out_runs",
                lambda s, now: sweeps.fail_timed_out_runs(s, versions, now),
                lambda s: sweeps.next_run_timeout_at(s, versions),
            ),
        ]
        self._deadlines: dict[str, datetime | None] = {}
        self._deadlines_read: datetime | None = None  # None: read them before the next wait
        self._last_safety_sweep: datetime | None = None
        self._last_lapse_check: datetime | None = None
        self._next_lapse: datetime | None = None

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
                self._deadlines_read = None
                timeout = self._sweep_interval
            await self._wakeup.wait(timeout)

    async def run_once(self, *, full: bool = False) -> int:
        """One pass; returns the work done when more may be waiting (a step reached its batch
        size, or a run ended and may make room for a queued one), else 0 once this pass's work
        is done: the next wake-up, not a second pass, brings what came meanwhile.
        ``full`` runs every periodic step whatever its deadline (tests, the safety sweep)."""
        now = self._clock.now()
        full = self._wakeup.take_full() or full
        if self._safety_sweep_due(now):
            full, self._last_safety_sweep = True, now
        if full:
            self._deadlines_read = None
        hot, more = await self._hot_pass()
        if hot:
            self._outbox_ready.notify()  # publish before the periodic steps run
        done = hot
        if self._deadlines_read is None:
            await self._read_deadlines()
        for periodic in self._periodic:
            if full or self._is_due(periodic.name):
                count = await self._in_transaction(periodic.run)
                if count:
                    log.debug("scheduler step %s did %d", periodic.name, count)
                    done += count
                    self._deadlines_read = None
        if full or hot:
            done += await self._in_transaction(backfills.complete_finished_backfills)
        done += await self._sweep_if_due()
        if done - hot:
            self._outbox_ready.notify()
        return done if (more or done - hot) else 0

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """For tests: full passes until one finds nothing to do."""
        total = 0
        for _ in range(max_rounds):
            done = await self.run_once(full=True)
            if not done:
                return total
            total += done
        raise RuntimeError("the scheduler did not become idle")

    async def _hot_pass(self) -> tuple[int, bool]:
        """The event-driven steps in one transaction: (work done, whether more may wait)."""
        finished: dict[int, DagRunState] = {}

        async def steps(session: AsyncSession, now: datetime) -> int:
            started = await run_starts.start_queued_runs(session, now)
            if started:
                self._deadlines_read = None  # a run timeout may now fall due sooner
            progressed = await progress.advance_runs(session, self._versions, now)
            advanced = progressed.advanced
            queued = await queueing.queue_scheduled(session, now, new=progressed.scheduled)
            finished.update(effects_of(session).finished_runs)
            self._saturated = (
                started >= run_starts.BATCH
                or advanced >= progress.BATCH
                or queued >= queueing.BATCH
            )
            return started + advanced + queued

        self._saturated = False
        done = await self._in_transaction(steps)
        return done, self._saturated or bool(finished)

    async def _in_transaction(self, step: Step) -> int:
        """Run ``step`` in a transaction of its own, with the DAG callbacks and failure
        notifications of the runs it ended."""
        async with self._database.sessions.begin() as session:
            now = self._clock.now()
            count = await step(session, now)
            count += await dag_callbacks.queue_dag_callbacks(session, self._versions, now)
            notifications = await self._add_notifications(session, now)
        if notifications and self._notifier_ready is not None:
            self._notifier_ready.notify()
        return count

    def _safety_sweep_due(self, now: datetime) -> bool:
        last = self._last_safety_sweep
        return last is None or (now - last).total_seconds() >= self._sweep_interval

    def _is_due(self, name: str) -> bool:
        moment = self._deadlines.get(name)
        return moment is not None and moment <= self._clock.now()

    async def _read_deadlines(self) -> None:
        """The next moment of each periodic step, and the earliest lease, in one transaction."""
        async with self._database.sessions() as session:
            for periodic in self._periodic:
                self._deadlines[periodic.name] = await periodic.next_at(session)
            self._next_lapse = await sweeps.next_lease_lapse_at(session)
        self._deadlines_read = self._clock.now()

    async def _sweep_if_due(self) -> int:
        """Requeue lapsed attempts once the earliest lease known has passed, and at most every
        ``LAPSE_CHECK`` seconds while passes follow each other (a busy loop does not stop to
        look)."""
        now = self._clock.now()
        if not (self._lapse_due(now) or self._lapse_check_due(now)):
            return 0
        if not self._database.outage.has_been_up_for(self._lease_seconds):
            return 0  # leases could not be renewed during the outage: give workers a lease
        self._last_lapse_check = now
        async with self._database.sessions.begin() as session:
            lapsed = await sweeps.requeue_lapsed_attempts(session, now, self._max_lost_attempts)
            self._next_lapse = await sweeps.next_lease_lapse_at(session)
        return lapsed

    def _lapse_due(self, now: datetime) -> bool:
        """The earliest lease known has passed, or, with none known when the deadlines were
        read, a lease taken since then could have."""
        moment = self._next_lapse
        if moment is None and self._deadlines_read is not None:
            moment = self._deadlines_read + timedelta(seconds=self._lease_seconds)
        return moment is not None and moment <= now

    def _lapse_check_due(self, now: datetime) -> bool:
        last = self._last_lapse_check
        return last is None or (now - last).total_seconds() >= min(
            self._sweep_interval, LAPSE_CHECK
        )

    async def _add_notifications(self, session: AsyncSession, now: datetime) -> int:
        """In the step's transaction: a notification row per run this step failed."""
        if self._notifier_ready is None:
            return 0
        finished = effects_of(session).finished_runs
        failed = [run_id for run_id, state in finished.items() if state is DagRunState.FAILED]
        return await add_failure_notifications(session, failed, now)

    async def _idle_timeout(self) -> float:
        """Until the earliest deadline (read again first when it is stale)."""
        now = self._clock.now()
        read = self._deadlines_read
        if read is None or (now - read).total_seconds() >= DEADLINE_REFRESH:
            await self._read_deadlines()
            read = self._deadlines_read
        moments = [m for m in self._deadlines.values() if m is not None]
        lapse = self._next_lapse
        if lapse is None and read is not None:
            lapse = read + timedelta(seconds=self._lease_seconds)
        if lapse is not None:
            moments.append(lapse)
        timeout = self._sweep_interval
        for moment in moments:
            timeout = min(timeout, (moment - self._clock.now()).total_seconds())
        return max(timeout, MIN_IDLE_WAIT)
