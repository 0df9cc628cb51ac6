"""A large, realistic history in a migrated PostgreSQL database, for the benchmarks that read it
(``bench.api_lists`` now, the dashboard pages later).

``seed(database_url, ...)`` writes DAGs (one version each), runs spread over them with one DAG
holding a large share (the per-DAG lists' worst case), and task instances with one attempt each
for a subset of the runs, through ``COPY`` (asyncpg): 100,000 runs take seconds, not minutes.

Everything written is *finished* (runs success or failed, task instances success or failed, no
DAG schedule, ``needs_scheduling`` false), so a ``weir api`` serving the database has nothing to
schedule and the scheduler's own queries stay out of the measurement. Ids grow with the logical
date, as they do in a real history. The data is deterministic for given sizes.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from weir import dag, task
from weir.dag import collect_dags

__all__ = ["SeedSizes", "Seeded", "libpq_url", "seed"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_TAGS = 10  # DAG i carries the tag f"team_{i % _TAGS}", and "etl" when i is even
_FAILED_ONE_IN = 12  # about 8 % of the runs and of their task instances fail


@dataclass(frozen=True)
class SeedSizes:
    """How much history to write; the defaults are issue 4's "100,000 runs"."""

    dags: int = 1000
    runs: int = 100_000
    big_dag_runs: int = 50_000
    task_instances: int = 100_000
    tasks_per_run: int = 10

    def __post_init__(self) -> None:
        if self.dags < 2 or not 0 < self.big_dag_runs < self.runs or self.tasks_per_run < 1:
            raise ValueError(f"need at least 2 DAGs and 0 < big_dag_runs < runs: {self}")

    @property
    def runs_with_tasks(self) -> int:
        return min(self.runs, self.task_instances // self.tasks_per_run)


@dataclass(frozen=True)
class Seeded:
    """What the benchmarks query: names of things that exist, and how many rows there are."""

    sizes: SeedSizes
    big_dag_id: str
    tag: str
    tagged_dags: int  # DAGs carrying ``tag``
    sample_run_id: str  # a run of the big DAG that has task instances
    sample_run_pk: int
    runs: int
    failed_runs: int
    task_instances: int


def libpq_url(database_url: str) -> str:
    """``postgresql+asyncpg://…`` as the plain ``postgresql://…`` asyncpg connects to."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def dag_id_of(index: int) -> str:
    return f"bench_dag_{index:04d}"


@task
async def step() -> None:
    """The one task of the seeded DAGs' structure, chained ``tasks_per_run`` times."""


def _structure(tasks: int) -> dict[str, Any]:
    """A serialized DAG version as the DAG processor would store it (built by the real SDK)."""

    @dag
    def bench_seed() -> None:
        steps = [step() for _ in range(tasks)]
        for upstream, downstream in itertools.pairwise(steps):
            upstream >> downstream

    with collect_dags() as found:
        bench_seed()
    return found[0].to_dict()


async def seed(database_url: str, sizes: SeedSizes | None = None) -> Seeded:
    """Write the history into an empty, migrated PostgreSQL database and ANALYZE it."""
    sizes = sizes or SeedSizes()
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        async with connection.transaction():
            await _copy_dags(connection, sizes)
            runs = _plan_runs(sizes)
            await _copy(connection, "dag_run", _RUN_COLUMNS, (r.row() for r in runs))
            with_tasks = runs[:: max(1, len(runs) // sizes.runs_with_tasks)]
            with_tasks = with_tasks[: sizes.runs_with_tasks]
            task_ids = [t["task_id"] for t in _structure(sizes.tasks_per_run)["tasks"]]
            instances = list(_task_instances(with_tasks, task_ids))
            await _copy(connection, "task_instance", _TI_COLUMNS, instances)
            attempts = [(ti[0], 1, ti[6], ti[15], ti[17], ti[18], None) for ti in instances]
            await _copy(connection, "task_attempt", _ATTEMPT_COLUMNS, attempts)
            for table in ("dag_version", "dag_run", "task_instance"):
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        # What autovacuum would have done to a table that grew over months: statistics for the
        # planner and a visibility map for index-only scans.
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    big = dag_id_of(0)
    sample = next(r for r in reversed(with_tasks) if r.dag_id == big)
    return Seeded(
        sizes=sizes,
        big_dag_id=big,
        tag="team_3",
        tagged_dags=len(range(3, sizes.dags, _TAGS)),
        sample_run_id=sample.run_id,
        sample_run_pk=sample.id,
        runs=len(runs),
        failed_runs=sum(r.state == "failed" for r in runs),
        task_instances=len(instances),
    )


async def _copy(connection: asyncpg.Connection, table: str, columns: list[str], rows: Any) -> None:
    await connection.copy_records_to_table(table, records=rows, columns=columns)


async def _copy_dags(connection: asyncpg.Connection, sizes: SeedSizes) -> None:
    template = _structure(sizes.tasks_per_run)
    versions, dags = [], []
    for index in range(sizes.dags):
        dag_id = dag_id_of(index)
        tags = [f"team_{index % _TAGS}", *(["etl"] if index % 2 == 0 else [])]
        fileloc = f"seed/{dag_id}.py"
        serialized = {**template, "dag_id": dag_id, "tags": tags, "fileloc": fileloc}
        digest = f"{index:064x}"
        versions.append((index + 1, dag_id, digest, digest, json.dumps(serialized), _EPOCH))
        description = f"Seeded DAG {index} of the list benchmarks."
        dags.append((dag_id, fileloc, False, True, None, description, json.dumps(tags),
                     index + 1, _EPOCH))  # fmt: skip
    await _copy(connection, "dag_version", _VERSION_COLUMNS, versions)
    await _copy(connection, "dag", _DAG_COLUMNS, dags)


@dataclass(frozen=True, slots=True)
class _Run:
    id: int
    dag_id: str
    run_id: str
    version_id: int
    state: str
    run_type: str
    logical_date: datetime

    def row(self) -> tuple[Any, ...]:
        start = self.logical_date + timedelta(seconds=5)
        end = start + timedelta(seconds=60)
        return (self.id, self.dag_id, self.run_id, self.version_id, self.state, self.run_type,
                self.logical_date, self.logical_date - timedelta(hours=1), self.logical_date,
                "{}", self.logical_date, start, end, False)  # fmt: skip


def _plan_runs(sizes: SeedSizes) -> list[_Run]:
    """The big DAG (index 0) runs hourly; the others share the rest, each daily."""
    rng = random.Random(4)
    per_dag = [sizes.big_dag_runs] + [0] * (sizes.dags - 1)
    for n in range(sizes.runs - sizes.big_dag_runs):
        per_dag[1 + n % (sizes.dags - 1)] += 1
    planned: list[tuple[datetime, int, int]] = []
    for index, count in enumerate(per_dag):
        every = timedelta(hours=1) if index == 0 else timedelta(days=1)
        planned.extend((_EPOCH - every * k, index, k) for k in range(count))
    planned.sort()
    runs = []
    for run_pk, (logical_date, index, k) in enumerate(planned, start=1):
        run_type = "manual" if k % 10 == 9 else "scheduled"
        state = "failed" if rng.randrange(_FAILED_ONE_IN) == 0 else "success"
        run_id = f"{run_type}__{logical_date.isoformat()}"
        runs.append(
            _Run(run_pk, dag_id_of(index), run_id, index + 1, state, run_type, logical_date)
        )
    return runs


def _task_instances(runs: list[_Run], task_ids: list[str]) -> Iterator[tuple[Any, ...]]:
    """Every task of each run, in order; a failed run's last task failed."""
    ti_pk = 0
    for run in runs:
        for position, task_id in enumerate(task_ids):
            ti_pk += 1
            failed = run.state == "failed" and position == len(task_ids) - 1
            start = run.logical_date + timedelta(seconds=6 + 5 * position)
            yield (ti_pk, run.id, run.dag_id, run.run_id, task_id, -1,
                   "failed" if failed else "success", 1, 1, 0.0, "default", "default_pool", 1, 1,
                   None, "bench-host", start - timedelta(seconds=1), start,
                   start + timedelta(seconds=4))  # fmt: skip


_VERSION_COLUMNS = ["id", "dag_id", "hash", "file_hash", "serialized", "created_at"]
_DAG_COLUMNS = ["dag_id", "fileloc", "is_paused", "is_active", "schedule", "description", "tags",
                "version_id", "last_parsed_at"]  # fmt: skip
_RUN_COLUMNS = ["id", "dag_id", "run_id", "version_id", "state", "run_type", "logical_date",
                "data_interval_start", "data_interval_end", "conf", "created_at", "start_date",
                "end_date", "needs_scheduling"]  # fmt: skip
_TI_COLUMNS = ["id", "dag_run_id", "dag_id", "run_id", "task_id", "map_index", "state",
               "attempt", "max_tries", "retry_delay", "queue", "pool", "pool_slots",
               "priority_weight", "wait_code", "worker", "queued_at", "start_date",
               "end_date"]  # fmt: skip
_ATTEMPT_COLUMNS = ["task_instance_id", "attempt", "state", "worker", "start_date", "end_date",
                    "error"]  # fmt: skip
