"""The service's background loops, supervised together: scheduler, outbox relay, DAG processor,
retention job, failure notifier (when configured) and (on PostgreSQL) the wake-up listener. They
run in one TaskGroup: if one crashes, the group ends and the process exits non-zero rather than
living on half alive. A database outage is not a crash: each loop waits ``OUTAGE_RETRY`` seconds
and tries again, and the outage is logged once (``app.db.outage``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.dag_processor.supervisor import DagProcessor
from app.live import CHANGES_CHANNEL
from app.notifications import FailureNotifier
from app.relay import OutboxRelay
from app.retention import RetentionJob
from app.scheduler.loop import Scheduler
from app.scheduler.wakeup import CHANNEL as WAKEUP_CHANNEL
from app.scheduler.wakeup import listen_for_wakeups, parse_wakeup
from app.state import ServiceState
from weir.broker import Broker

__all__ = ["ServiceLoops", "run_loops"]

log = logging.getLogger(__name__)


class ServiceLoops:
    """The loops of one replica, also driven step by step by tests (``run_until_idle``)."""

    def __init__(self, state: ServiceState, broker: Broker) -> None:
        settings = state.settings
        self.notifier = (
            FailureNotifier(
                settings, state.database, state.clock, sweep_interval=settings.sweep_interval
            )
            if settings.notify_url is not None
            else None
        )
        self.scheduler = Scheduler(
            state.database,
            state.clock,
            wakeup=state.scheduler_wakeup,
            outbox_ready=state.outbox_ready,
            versions=state.versions,
            sweep_interval=settings.sweep_interval,
            max_lost_attempts=settings.max_lost_attempts,
            lease_seconds=settings.lease_seconds,
            notifier_ready=self.notifier.ready if self.notifier is not None else None,
        )
        self.relay = OutboxRelay(
            state.database,
            broker,
            state.outbox_ready,
            tokens=state.tokens,
            sweep_interval=settings.sweep_interval,
        )
        self.dag_processor = DagProcessor(
            settings, state.database, on_change=state.scheduler_wakeup.notify
        )
        self.retention = RetentionJob(settings, state.database, state.clock)
        self._state = state

    def wake_all(self) -> None:
        """Wake every waiting loop, so that a set ``stop`` is seen at once."""
        self._state.scheduler_wakeup.notify()
        self._state.outbox_ready.notify()
        if self.notifier is not None:
            self.notifier.ready.notify()

    def _on_wakeup(self, payload: str) -> None:
        """A NOTIFY from a replica: this one's own were acted on in-process already."""
        own, full = parse_wakeup(payload)
        if not own:
            self._state.scheduler_wakeup.notify(full=full)

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.scheduler.run(stop), name="scheduler")
            group.create_task(self.relay.run(stop), name="outbox-relay")
            group.create_task(self.dag_processor.run(stop), name="dag-processor")
            group.create_task(self.retention.run(stop), name="retention")
            if self.notifier is not None:
                group.create_task(self.notifier.run(stop), name="failure-notifier")
            if self._state.database.is_postgres:
                group.create_task(
                    listen_for_wakeups(
                        self._state.settings.database_url,
                        {
                            WAKEUP_CHANNEL: self._on_wakeup,
                            CHANGES_CHANNEL: self._state.database.changes.receive,
                        },
                        stop,
                        outage=self._state.database.outage,
                    ),
                    name="wakeup-listener",
                )


@asynccontextmanager
async def run_loops(loops: ServiceLoops) -> AsyncIterator[None]:
    """Run the loops for the duration of the block; stop them cleanly on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(loops.run(stop), name="service-loops")
    try:
        yield
    finally:
        stop.set()
        loops.wake_all()
        try:
            async with asyncio.timeout(10):
                await task
        except TimeoutError:
            log.warning("service loops did not stop within 10 s; cancelling them")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
