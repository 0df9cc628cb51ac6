"""What the dashboard shows beyond ``bench.seed``'s finished history: a run in progress (so its
page works out wait reasons), DAG files on disk (the code tab), an audit log and import errors.

``seed_dashboard`` runs after ``bench.seed.seed`` on the same database and changes none of the
counts ``Seeded`` reports: the live run is a *successful* run of the big DAG turned back into a
running one (its tasks: two done, one running, the rest waiting for their upstream), so the REST
lists' totals still match. The running attempt's lease ends far in the future: no zombie sweep
fails it while a benchmark reads the page.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.seed import Seeded, dag_id_of, libpq_url

__all__ = ["DashboardSeeded", "dag_source", "seed_dashboard", "write_dag_files"]

_FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
_ACTIONS = ("run.trigger", "dag.pause", "dag.unpause", "task_instance.clear", "variable.update")


@dataclass(frozen=True)
class DashboardSeeded:
    """The extra rows, for the pages that show them."""

    live_run_id: str | None
    dag_files: dict[str, str] = field(default_factory=dict)  # fileloc -> source
    audit_entries: int = 0
    import_errors: int = 0


def dag_source(index: int, tasks: int) -> str:
    """A DAG file defining seeded DAG ``index`` as the seed stored it: ``tasks`` chained steps."""
    dag_id = dag_id_of(index)
    return (
        f'"""Seeded DAG {index} of the benchmarks (bench.seed): {tasks} chained no-op steps."""\n\n'
        "from weir import dag, task\n\n\n"
        '@task\nasync def step() -> None:\n    """Does nothing, fast."""\n\n\n'
        f"@dag\ndef {dag_id}() -> None:\n"
        f"    steps = [step() for _ in range({tasks})]\n"
        "    for upstream, downstream in zip(steps, steps[1:]):\n"
        "        upstream >> downstream\n\n\n"
        f"{dag_id}()\n"
    )


async def seed_dashboard(
    database_url: str,
    seeded: Seeded,
    *,
    live_run: bool = True,
    dag_files: int = 2,
    audit_entries: int = 10_000,
    import_errors: int = 3,
) -> DashboardSeeded:
    """Add the rows; write the files with ``write_dag_files`` before a ``weir api`` serves the
    database, or its DAG processor deactivates the DAGs whose files it cannot find."""
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        async with connection.transaction():
            live_run_id = await _start_live_run(connection, seeded) if live_run else None
            files = {
                f"seed/{dag_id_of(i)}.py": dag_source(i, seeded.sizes.tasks_per_run)
                for i in range(min(dag_files, seeded.sizes.dags))
            }
            await _record_dag_files(connection, files)
            await _copy_audit_log(connection, audit_entries)
            await _copy_import_errors(connection, import_errors)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return DashboardSeeded(live_run_id, files, audit_entries, import_errors)


def write_dag_files(dags_folder: Path, extras: DashboardSeeded) -> None:
    for fileloc, source in extras.dag_files.items():
        path = dags_folder / fileloc
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


async def _start_live_run(connection: asyncpg.Connection, seeded: Seeded) -> str | None:
    """Turn the newest successful run of the big DAG that has tasks (not the API benchmark's
    sample run) back into a running one; returns its run_id, None if there is none."""
    row = await connection.fetchrow(
        "SELECT r.id, r.run_id FROM dag_run r WHERE r.dag_id = $1 AND r.state = 'success' "
        "AND r.id <> $2 AND EXISTS (SELECT 1 FROM task_instance t WHERE t.dag_run_id = r.id) "
        "ORDER BY r.id DESC LIMIT 1",
        seeded.big_dag_id,
        seeded.sample_run_pk,
    )
    if row is None:
        return None
    run_pk, run_id = row["id"], row["run_id"]
    await connection.execute(
        "UPDATE dag_run SET state = 'running', end_date = NULL WHERE id = $1", run_pk
    )
    ids = [r["id"] for r in await connection.fetch(
        "SELECT id FROM task_instance WHERE dag_run_id = $1 ORDER BY id", run_pk
    )]  # fmt: skip
    running, waiting = ids[2:3], ids[3:]
    await connection.execute(
        "UPDATE task_instance SET state = 'running', end_date = NULL, lease_expires_at = $2 "
        "WHERE id = ANY($1::bigint[])",
        running,
        _FAR_FUTURE,
    )
    await connection.execute(
        "UPDATE task_attempt SET state = 'running', end_date = NULL "
        "WHERE task_instance_id = ANY($1::bigint[])",
        running,
    )
    await connection.execute(
        "UPDATE task_instance SET state = 'none', attempt = 0, worker = NULL, queued_at = NULL, "
        "start_date = NULL, end_date = NULL WHERE id = ANY($1::bigint[])",
        waiting,
    )
    await connection.execute(
        "DELETE FROM task_attempt WHERE task_instance_id = ANY($1::bigint[])", waiting
    )
    return str(run_id)


async def _record_dag_files(connection: asyncpg.Connection, files: dict[str, str]) -> None:
    """What the DAG processor would have stored after parsing ``files``: it parses them again
    only if their content changes."""
    records = [
        (fileloc, hashlib.sha256(source.encode()).hexdigest(),
         json.dumps([Path(fileloc).stem]), datetime(2026, 1, 1, tzinfo=UTC))
        for fileloc, source in files.items()
    ]  # fmt: skip
    await connection.copy_records_to_table(
        "dag_file", records=records, columns=["fileloc", "file_hash", "dag_ids", "last_parsed_at"]
    )


async def _copy_audit_log(connection: asyncpg.Connection, entries: int) -> None:
    """A month of clicks: one entry every few minutes, newest last."""
    end = datetime(2026, 1, 1, tzinfo=UTC)
    records = [
        (end - timedelta(minutes=3 * (entries - n)), None, "admin", _ACTIONS[n % len(_ACTIONS)],
         dag_id_of(n % 50), json.dumps({"n": n}), "api" if n % 3 else "dashboard")
        for n in range(entries)
    ]  # fmt: skip
    await connection.copy_records_to_table(
        "audit_log",
        records=records,
        columns=["at", "user_id", "actor", "action", "target", "detail", "origin"],
    )


async def _copy_import_errors(connection: asyncpg.Connection, count: int) -> None:
    records = [
        (f"broken/dag_{n}.py", f"Traceback (most recent call last):\nSyntaxError: line {n + 1}",
         datetime(2026, 1, 1, tzinfo=UTC))
        for n in range(count)
    ]  # fmt: skip
    await connection.copy_records_to_table(
        "import_error", records=records, columns=["fileloc", "error", "created_at"]
    )
