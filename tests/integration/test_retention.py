"""Retention against real, migrated databases (SQLite and PostgreSQL): which runs a policy deletes,
that their task instances, attempts, logs and XComs go with them (the real ``ON DELETE CASCADE``),
that the archive holds exactly what was deleted, and that two replicas delete each run once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database, create_database
from app.db.models import AttemptLog, Dag, DagRun, DagVersion, TaskAttempt, TaskInstance, XCom
from app.retention import RetentionJob
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
)
from tests.support.stack import wait_until
from weir.config import Settings
from weir.states import DagRunState, TaskState

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


class FrozenClock:
    def now(self) -> datetime:
        return NOW


def make_job(database: Database, **settings: Any) -> RetentionJob:
    return RetentionJob(Settings(database_url="sqlite://", **settings), database, FrozenClock())


# --- history built through the ORM ----------------------------------------------------------------


async def add_dag(database: Database, dag_id: str, **options: Any) -> None:
    """A DAG whose latest version carries ``options`` (e.g. ``retention_days``)."""
    async with database.sessions.begin() as session:
        version = DagVersion(
            dag_id=dag_id,
            hash=dag_id,
            file_hash="f",
            serialized={"tasks": [], **options},
            created_at=NOW,
        )
        session.add(version)
        await session.flush()
        session.add(
            Dag(dag_id=dag_id, fileloc=f"{dag_id}.py", version_id=version.id, last_parsed_at=NOW)
        )


async def add_run(
    database: Database,
    dag_id: str,
    days_ago: float,
    state: DagRunState = DagRunState.SUCCESS,
    tasks: Sequence[str] = ("extract", "load"),
) -> str:
    """A run that ended ``days_ago`` (its logical date one day earlier), each task with an
    attempt, a log line and an XCom; returns its run id."""
    ended = NOW - timedelta(days=days_ago)
    run_id = f"scheduled__{ended.isoformat()}"
    finished = state in (DagRunState.SUCCESS, DagRunState.FAILED)
    async with database.sessions.begin() as session:
        version_id = await session.scalar(select(Dag.version_id).where(Dag.dag_id == dag_id))
        run = DagRun(
            dag_id=dag_id,
            run_id=run_id,
            version_id=version_id,
            state=state,
            run_type="scheduled",
            logical_date=ended - timedelta(days=1),
            conf={"day": days_ago},
            created_at=ended - timedelta(days=1),
            start_date=ended - timedelta(hours=1),
            end_date=ended if finished else None,
        )
        session.add(run)
        await session.flush()
        for task_id in tasks:
            await add_task_instance(session, run, task_id)
    return run_id


async def add_task_instance(session: AsyncSession, run: DagRun, task_id: str) -> None:
    """A successful task instance with its attempt record, one log line and an XCom."""
    instance = TaskInstance(
        dag_run_id=run.id,
        dag_id=run.dag_id,
        run_id=run.run_id,
        task_id=task_id,
        state=TaskState.SUCCESS,
        attempt=1,
        queue="default",
    )
    session.add(instance)
    await session.flush()
    value = {"rows": [1, 2], "task": task_id}
    session.add_all(
        [
            TaskAttempt(task_instance_id=instance.id, attempt=1, state=TaskState.SUCCESS),
            AttemptLog(
                task_instance_id=instance.id, attempt=1, data=f"{task_id} ran\n", created_at=NOW
            ),
            XCom(task_instance_id=instance.id, dag_run_id=run.id, task_id=task_id, value=value),
        ]
    )


async def run_ids(database: Database, dag_id: str) -> set[str]:
    async with database.sessions() as session:
        return set(await session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)))


async def count(database: Database, model: Any) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- which runs a policy deletes ------------------------------------------------------------------


async def test_age_policy_deletes_runs_that_ended_longer_ago(database: Database) -> None:
    await add_dag(database, "etl")
    kept = {await add_run(database, "etl", days) for days in (1, 10, 29.9)}
    for days in (30.1, 45, 400):
        await add_run(database, "etl", days)

    assert await make_job(database, retention_days=30).run_once() == 3
    assert await run_ids(database, "etl") == kept
    assert await make_job(database, retention_days=30).run_once() == 0


async def test_count_policy_keeps_the_most_recent_finished_runs_per_dag(database: Database) -> None:
    for dag_id in ("a", "b"):
        await add_dag(database, dag_id)
    newest = [await add_run(database, "a", days) for days in (1, 2, 3)]
    for days in (4, 5, 6):
        await add_run(database, "a", days)
    b_runs = {await add_run(database, "b", days) for days in (7, 8)}

    assert await make_job(database, retention_runs=3).run_once() == 3
    assert await run_ids(database, "a") == set(newest)
    assert await run_ids(database, "b") == b_runs


async def test_a_run_is_kept_only_within_both_limits(database: Database) -> None:
    await add_dag(database, "etl")
    recent = await add_run(database, "etl", 1)
    for days in (2, 3, 50):
        await add_run(database, "etl", days)

    # Runs 2 and 3 days old are within 30 days but beyond the last 1; the 50-day one is both.
    assert await make_job(database, retention_days=30, retention_runs=1).run_once() == 3
    assert await run_ids(database, "etl") == {recent}


async def test_the_latest_finished_run_is_always_kept(database: Database) -> None:
    await add_dag(database, "quarterly")
    latest = await add_run(database, "quarterly", 90)
    await add_run(database, "quarterly", 180)

    assert await make_job(database, retention_days=7).run_once() == 1
    assert await run_ids(database, "quarterly") == {latest}


async def test_unfinished_runs_are_never_deleted_nor_counted(database: Database) -> None:
    await add_dag(database, "etl")
    unfinished = {
        await add_run(database, "etl", 0.5, DagRunState.RUNNING),  # newer than the finished ones
        await add_run(database, "etl", 200, DagRunState.RUNNING),
        await add_run(database, "etl", 300, DagRunState.QUEUED),
    }
    latest = await add_run(database, "etl", 2)
    for days in (3, 4):
        await add_run(database, "etl", days)

    # Within the last 2 finished runs counts only finished ones: the 4-day-old run is beyond it.
    assert await make_job(database, retention_runs=2).run_once() == 1
    # Past the age limit: every finished run but the latest goes, unfinished ones stay.
    assert await make_job(database, retention_days=1).run_once() == 1
    assert await run_ids(database, "etl") == unfinished | {latest}


async def test_a_dags_own_limits_beat_the_global_ones(database: Database) -> None:
    await add_dag(database, "audit", retention_days=365)  # longer than the global 30 days
    await add_dag(database, "forever", retention_days=0)  # lifts the global age limit
    await add_dag(database, "chatty", retention_runs=1)  # adds a count limit; age still global
    await add_dag(database, "plain")
    for dag_id in ("audit", "forever", "chatty", "plain"):
        for days in (1, 2, 100, 500):
            await add_run(database, dag_id, days)

    assert await make_job(database, retention_days=30).run_once() == 1 + 0 + 3 + 2
    assert len(await run_ids(database, "audit")) == 3
    assert len(await run_ids(database, "forever")) == 4
    assert len(await run_ids(database, "chatty")) == 1
    assert len(await run_ids(database, "plain")) == 2


async def test_no_policy_deletes_nothing(database: Database) -> None:
    await add_dag(database, "etl")
    await add_run(database, "etl", 1000)
    await add_run(database, "etl", 2000)
    assert await make_job(database).run_once() == 0


# --- what goes with a run, in batches -------------------------------------------------------------


async def test_deleting_in_batches_cascades_to_every_child_row(database: Database) -> None:
    await add_dag(database, "etl")
    kept = await add_run(database, "etl", 1)
    for days in range(10, 17):
        await add_run(database, "etl", days)

    job = make_job(database, retention_runs=1, retention_batch_size=2)
    assert await job.run_once() == 7
    assert await run_ids(database, "etl") == {kept}
    for model in (TaskInstance, TaskAttempt, AttemptLog, XCom):
        assert await count(database, model) == 2, model.__name__


async def test_the_archive_holds_exactly_what_was_deleted(
    database: Database, tmp_path: Path
) -> None:
    await add_dag(database, "etl")
    await add_run(database, "etl", 1)
    deleted = {await add_run(database, "etl", days, DagRunState.FAILED) for days in (40, 41)}
    archive = tmp_path / "archive"

    job = make_job(
        database, retention_days=30, retention_export_dir=archive, retention_export_logs=True
    )
    assert await job.run_once() == 2

    files = sorted(archive.rglob("*.jsonl"))
    assert [f.relative_to(archive).as_posix() for f in files] == [
        "etl/2027-04-20.jsonl",
        "etl/2027-04-21.jsonl",
    ]
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {line["run_id"] for line in lines} == deleted
    for line in lines:
        assert line["state"] == "failed" and line["conf"]["day"] in (40, 41)
        assert [t["task_id"] for t in line["task_instances"]] == ["extract", "load"]
        for instance in line["task_instances"]:
            assert [a["attempt"] for a in instance["attempts"]] == [1]
            assert instance["xcom"]["value"] == {"rows": [1, 2], "task": instance["task_id"]}
            assert [log["data"] for log in instance["logs"]] == [f"{instance['task_id']} ran\n"]


async def test_a_failed_export_deletes_nothing(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await add_dag(database, "etl")
    runs = {await add_run(database, "etl", days) for days in (1, 40, 41)}
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")

    job = make_job(database, retention_days=30, retention_export_dir=not_a_folder)
    assert await job.run_once() == 0
    assert "retention of dag_id=etl failed" in caplog.text
    assert await run_ids(database, "etl") == runs
    assert await count(database, TaskInstance) == 6


async def test_the_loop_cleans_when_it_starts_and_stops_promptly(database: Database) -> None:
    await add_dag(database, "etl")
    kept = await add_run(database, "etl", 1)
    await add_run(database, "etl", 2)
    stop = asyncio.Event()
    job = make_job(database, retention_runs=1, retention_interval=3600)
    task = asyncio.create_task(job.run(stop))

    await wait_until(lambda: _only(database, kept))  # the first pass, then an hour's rest
    stop.set()
    async with asyncio.timeout(2):
        await task


async def _only(database: Database, run_id: str) -> bool:
    return await run_ids(database, "etl") == {run_id}


# --- replicas -------------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_two_replicas_delete_and_archive_each_run_once(tmp_path: Path) -> None:
    url = await create_postgres_database()
    first, second = create_database(url), create_database(url)
    try:
        await add_dag(first, "etl")
        for days in range(1, 62):
            await add_run(first, "etl", days, tasks=("only",))
        archive = tmp_path / "archive"
        settings = {
            "retention_runs": 1,
            "retention_batch_size": 3,
            "retention_export_dir": archive,
        }
        done = await asyncio.gather(
            make_job(first, **settings).run_once(), make_job(second, **settings).run_once()
        )
        assert sum(done) == 60
        assert all(done), "both replicas should have found work"
        lines = [
            json.loads(x) for f in archive.rglob("*.jsonl") for x in f.read_text().splitlines()
        ]
        assert len(lines) == 60 and len({line["id"] for line in lines}) == 60
        assert len(await run_ids(first, "etl")) == 1
    finally:
        await first.dispose()
        await second.dispose()
        await drop_postgres_database(url)
