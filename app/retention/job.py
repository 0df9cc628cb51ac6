"""The retention job: every ``retention_interval`` seconds, delete the finished runs each DAG's
policy lets go, in small batches, archiving them first when ``retention_export_dir`` is set.

A periodic timer, not a wake-up: this is maintenance and never on a run's critical path. Each batch
is one short transaction (lock the runs, archive, delete; task instances, attempts, logs and XComs
go by ``ON DELETE CASCADE``); between batches the job rests as long as the batch took, so it never
holds more than half of the database's write time, even on SQLite's single writer lock.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import delete

from app.db.engine import Database
from app.db.models import DagRun
from app.db.outage import OUTAGE_RETRY, UNAVAILABLE
from app.retention.export import append_records, read_records
from app.retention.policy import RetentionPolicy, claim_expired_runs, load_policies
from weir.clock import Clock
from weir.config import Settings

__all__ = ["RetentionJob"]

log = logging.getLogger(__name__)


class RetentionJob:
    def __init__(self, settings: Settings, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock
        self._default = RetentionPolicy.from_settings(settings)
        self._interval = settings.retention_interval
        self._batch_size = settings.retention_batch_size
        self._export_dir = settings.retention_export_dir
        self._export_logs = settings.retention_export_logs

    async def run(self, stop: asyncio.Event) -> None:
        """Clean now and then every interval until ``stop``; a failed pass is logged and retried
        at the next one, or after ``OUTAGE_RETRY`` seconds when the database was unavailable
        (the outage is logged once, by ``app.db.outage``)."""
        while not stop.is_set():
            rest = self._interval
            try:
                await self.run_once(stop)
            except UNAVAILABLE:
                rest = OUTAGE_RETRY
            except Exception:
                log.exception("retention pass failed; retrying in %.0f s", self._interval)
            await _rest(stop, rest)

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """One pass over every DAG with a policy; returns how many runs it deleted.

        A DAG that fails (its archive cannot be written, a row refuses to go) is logged and
        skipped, having lost nothing it had not archived; the other DAGs are still cleaned.
        """
        async with self._database.sessions() as session:
            policies = await load_policies(session, self._default)
        deleted = 0
        for dag_id, policy in policies.items():
            if stop is not None and stop.is_set():
                break
            try:
                deleted += await self._clean_dag(dag_id, policy, stop)
            except UNAVAILABLE:
                raise  # no other DAG can be cleaned either: the pass ends
            except Exception:
                log.exception("retention of dag_id=%s failed; retrying at the next pass", dag_id)
        return deleted

    async def _clean_dag(
        self, dag_id: str, policy: RetentionPolicy, stop: asyncio.Event | None
    ) -> int:
        deleted = 0
        while stop is None or not stop.is_set():
            started = time.monotonic()
            count = await self._delete_batch(dag_id, policy)
            deleted += count
            if count < self._batch_size:
                break
            # Let the scheduler and the API have the database before the next batch.
            await _rest(stop, time.monotonic() - started)
        if deleted:
            log.info("retention deleted %d finished runs of dag_id=%s", deleted, dag_id)
        return deleted

    async def _delete_batch(self, dag_id: str, policy: RetentionPolicy) -> int:
        """Lock, archive and delete one batch in one transaction: if archiving fails, the
        transaction rolls back and nothing of the batch is deleted."""
        async with self._database.sessions.begin() as session:
            runs = await claim_expired_runs(
                session, dag_id, policy, self._clock.now(), self._batch_size
            )
            if not runs:
                return 0
            if self._export_dir is not None:
                records = await read_records(session, runs, include_logs=self._export_logs)
                await asyncio.to_thread(append_records, self._export_dir, records)
            await session.execute(
                delete(DagRun).where(DagRun.id.in_([run.id for run in runs])),
                execution_options={"synchronize_session": False},
            )
        log.debug("retention deleted run_ids=%s of dag_id=%s", [run.run_id for run in runs], dag_id)
        return len(runs)


async def _rest(stop: asyncio.Event | None, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile (the loop must end promptly)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
