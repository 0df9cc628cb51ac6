"""The archive retention writes before it deletes: one JSON object per run and line, holding the
run with its task instances, their attempts, XComs and (when asked) log text, appended to
``<dir>/<dag_id>/<YYYY-MM-DD>.jsonl`` (the UTC day of the run's logical date).

Lines are written and fsynced before the deleting transaction commits, so a run is never deleted
without its line on disk. The reverse can happen (a crash between the fsync and the commit, or a
replica losing its connection): the run is exported again by the next pass. The archive is
therefore at-least-once; readers drop duplicates by the run's ``id`` (or ``dag_id`` + ``run_id``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AttemptLog, DagRun, TaskAttempt, TaskInstance, XCom

__all__ = ["append_records", "export_path", "read_records"]

Record = dict[str, Any]


async def read_records(
    session: AsyncSession, runs: Sequence[DagRun], *, include_logs: bool
) -> list[Record]:
    """Each run as one nested record; children are read by join, not by long id lists."""
    run_pks = [run.id for run in runs]
    instances: dict[int, list[Record]] = defaultdict(list)
    by_pk: dict[int, Record] = {}
    for instance in await session.scalars(
        select(TaskInstance).where(TaskInstance.dag_run_id.in_(run_pks)).order_by(TaskInstance.id)
    ):
        record = {**_columns(instance), "attempts": [], "xcom": None}
        if include_logs:
            record["logs"] = []
        instances[instance.dag_run_id].append(record)
        by_pk[instance.id] = record
    of_runs = TaskInstance.dag_run_id.in_(run_pks)
    for attempt in await session.scalars(
        select(TaskAttempt).join(TaskInstance).where(of_runs).order_by(TaskAttempt.attempt)
    ):
        by_pk[attempt.task_instance_id]["attempts"].append(_columns(attempt))
    for xcom in await session.scalars(select(XCom).where(XCom.dag_run_id.in_(run_pks))):
        by_pk[xcom.task_instance_id]["xcom"] = _columns(xcom)
    if include_logs:
        for line in await session.scalars(
            select(AttemptLog).join(TaskInstance).where(of_runs).order_by(AttemptLog.id)
        ):
            by_pk[line.task_instance_id]["logs"].append(_columns(line))
    return [{**_columns(run), "task_instances": instances[run.id]} for run in runs]


def _columns(row: object) -> Record:
    """A row's columns by attribute name: the archive mirrors the schema of its day."""
    mapper = inspect(type(row))
    return {attribute.key: getattr(row, attribute.key) for attribute in mapper.column_attrs}


def export_path(directory: Path, record: Record) -> Path:
    """Where a run's line goes. A DAG id is ``[A-Za-z0-9_.-]+``; one starting with a dot (even
    ``..``) is escaped so that it can never name a folder outside ``directory``."""
    dag_id: str = record["dag_id"]
    folder = "%2E" + dag_id[1:] if dag_id.startswith(".") else dag_id
    logical_date: datetime = record["logical_date"]
    return directory / folder / f"{logical_date.date().isoformat()}.jsonl"


def append_records(directory: Path, records: Iterable[Record]) -> None:
    """Append the records as lines, file by file, and fsync each file and new folder.

    Blocking: call it in a thread. Each file gets its lines in one ``O_APPEND`` write, so two
    replicas sharing the directory never interleave inside a line.
    """
    lines: dict[Path, list[str]] = defaultdict(list)
    for record in records:
        lines[export_path(directory, record)].append(_encode(record))
    for path, texts in lines.items():
        new_folder, new_file = not path.parent.exists(), not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        _append(path, "".join(texts).encode())
        if new_folder:
            _fsync_directory(path.parent.parent)
        if new_file:
            _fsync_directory(path.parent)


def _encode(record: Record) -> str:
    return json.dumps(record, default=_json_default, ensure_ascii=False) + "\n"


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__} values to JSON")


def _append(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(path: Path) -> None:
    """Make a new directory entry durable: fsyncing a file does not persist its name."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
