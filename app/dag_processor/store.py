"""Record what parsing a DAG file found: its DAGs and their versions, or its import error.

Each ``record_*`` function is the whole database effect of one file and expects to run in its own
transaction; none commits (the supervisor owns ``async with sessions.begin()``). Upserts are
``INSERT … ON CONFLICT`` on both PostgreSQL and SQLite, so two API replicas parsing the same file
at once converge instead of failing on a unique key. Rows are written in ``dag_id`` order, so two
such transactions take their row locks in the same order and cannot deadlock.

A DAG whose schedule options changed (or that has no next run planned) gets its next scheduled
interval planned again here (``app.scheduler.due_runs.plan_next_run``); an unchanged schedule
keeps its plan, so re-parsing a file never moves or repeats a run. The webhooks a DAG declares are
synced with each stored DAG (``app.webhooks.declared``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, DagFile, DagVersion, ImportError_
from app.live import mark_changed
from app.scheduler.due_runs import plan_next_run
from app.webhooks.declared import sync_declared_hooks

__all__ = [
    "FileOutcome",
    "hash_structure",
    "invalidate_failed_files",
    "load_file_hashes",
    "record_deleted_file",
    "record_failed_file",
    "record_parsed_file",
]


@dataclasses.dataclass(frozen=True)
class FileOutcome:
    """What recording one file changed, for logs and for the supervisor's next decisions."""

    stored: list[str] = dataclasses.field(default_factory=list)
    deactivated: list[str] = dataclasses.field(default_factory=list)
    conflicts: dict[str, str] = dataclasses.field(default_factory=dict)  # dag_id -> owning file


def hash_structure(serialized: dict[str, Any]) -> str:
    """The identity of a DAG version: SHA-256 of its canonical JSON (key order does not count)."""
    canonical = json.dumps(serialized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def load_file_hashes(session: AsyncSession) -> dict[str, str]:
    """``fileloc -> file_hash`` of every file the processor has seen and not seen deleted."""
    rows = await session.execute(select(DagFile.fileloc, DagFile.file_hash))
    return {fileloc: file_hash for fileloc, file_hash in rows}


async def record_parsed_file(
    session: AsyncSession,
    fileloc: str,
    file_hash: str,
    dags: list[dict[str, Any]],
    now: datetime,
) -> FileOutcome:
    """Store a good parse: new versions, the DAG rows, DAGs the file no longer defines turned
    inactive. A DAG id another active file already owns is refused as this file's import error."""
    mark_changed(session)  # the DAG list and its import errors change on live pages
    # The version names its file: a worker imports that file to run the version's tasks.
    by_id = {d["dag_id"]: {**d, "fileloc": fileloc} for d in dags}
    conflicts = await _find_owners_elsewhere(session, fileloc, by_id)
    owned = sorted(set(by_id) - set(conflicts))
    for dag_id in owned:
        planned = await _previous_schedule(session, dag_id)
        version_id = await _upsert_version(session, by_id[dag_id], file_hash, now)
        await _upsert_dag(session, fileloc, by_id[dag_id], version_id, now)
        await sync_declared_hooks(session, dag_id, by_id[dag_id].get("webhooks") or [], now)
        if planned is None or planned != _schedule_key(by_id[dag_id]):
            await plan_next_run(session, dag_id, by_id[dag_id], now)
    previous = await _previous_dag_ids(session, fileloc)
    deactivated = await _deactivate(session, fileloc, set(previous) - set(owned))
    if conflicts:
        await _upsert_import_error(session, fileloc, _describe_conflicts(fileloc, conflicts), now)
    else:
        await session.execute(delete(ImportError_).where(ImportError_.fileloc == fileloc))
    await _upsert_file(session, fileloc, file_hash, owned, now)
    return FileOutcome(stored=owned, deactivated=deactivated, conflicts=conflicts)


async def record_failed_file(
    session: AsyncSession, fileloc: str, file_hash: str, error: str, now: datetime
) -> None:
    """Store an import error and leave the file's DAGs as they are: their last good version keeps
    running. The new hash is kept so the same broken content is not parsed again and again."""
    mark_changed(session)
    await _upsert_import_error(session, fileloc, error, now)
    previous = await _previous_dag_ids(session, fileloc)
    await _upsert_file(session, fileloc, file_hash, previous, now)


async def record_deleted_file(session: AsyncSession, fileloc: str) -> FileOutcome:
    """Forget a file that is gone; its DAGs turn inactive, their versions and runs stay."""
    mark_changed(session)
    owned = await session.scalars(select(Dag.dag_id).where(Dag.fileloc == fileloc))
    deactivated = await _deactivate(session, fileloc, set(owned))
    await session.execute(delete(ImportError_).where(ImportError_.fileloc == fileloc))
    await session.execute(delete(DagFile).where(DagFile.fileloc == fileloc))
    return FileOutcome(deactivated=deactivated)


async def invalidate_failed_files(session: AsyncSession) -> int:
    """Make every file with an import error be parsed again. Called when DAG ids were released:
    a file refused for defining one of them may now own it."""
    failing = select(ImportError_.fileloc)
    result = await session.execute(
        update(DagFile).where(DagFile.fileloc.in_(failing)).values(file_hash="")
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _find_owners_elsewhere(
    session: AsyncSession, fileloc: str, by_id: dict[str, dict[str, Any]]
) -> dict[str, str]:
    if not by_id:
        return {}
    rows = await session.execute(
        select(Dag.dag_id, Dag.fileloc)
        .where(Dag.dag_id.in_(sorted(by_id)), Dag.is_active, Dag.fileloc != fileloc)
        .order_by(Dag.dag_id)
        .with_for_update()
    )
    return {dag_id: owner for dag_id, owner in rows}


_SCHEDULE_OPTIONS = (
    "schedule",
    "schedule_interval",
    "start_date",
    "end_date",
    "timezone",
    "catchup",
)


def _schedule_key(serialized: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(serialized.get(name) for name in _SCHEDULE_OPTIONS)


async def _previous_schedule(session: AsyncSession, dag_id: str) -> tuple[Any, ...] | None:
    """The schedule options the DAG had, or None when it has no plan to keep (new, manual only,
    or its schedule ended): then its next run is planned afresh, which costs one query."""
    row = (
        await session.execute(
            select(Dag.next_run_after, DagVersion.serialized)
            .join(DagVersion, DagVersion.id == Dag.version_id)
            .where(Dag.dag_id == dag_id)
        )
    ).first()
    if row is None or row.next_run_after is None:
        return None
    return _schedule_key(row.serialized)


def _describe_conflicts(fileloc: str, conflicts: dict[str, str]) -> str:
    return "\n".join(
        f"DAG id {dag_id!r} in {fileloc} is already defined in {owner}: rename one of them, "
        f"or delete it from {owner} first. The DAG from {owner} keeps running."
        for dag_id, owner in sorted(conflicts.items())
    )


async def _previous_dag_ids(session: AsyncSession, fileloc: str) -> list[str]:
    ids = await session.scalar(select(DagFile.dag_ids).where(DagFile.fileloc == fileloc))
    return list(ids or [])


async def _deactivate(session: AsyncSession, fileloc: str, dag_ids: Iterable[str]) -> list[str]:
    """Turn off DAGs this file owned. The ``fileloc`` guard leaves a DAG another file took over."""
    targets = sorted(dag_ids)
    if not targets:
        return []
    changed = await session.scalars(
        update(Dag)
        .where(Dag.dag_id.in_(targets), Dag.fileloc == fileloc, Dag.is_active)
        .values(is_active=False)
        .returning(Dag.dag_id)
    )
    return sorted(changed)


def _insert(session: AsyncSession, model: Any) -> Any:
    """The dialect's INSERT, which is the one that knows ``ON CONFLICT``."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)


async def _upsert_version(
    session: AsyncSession, serialized: dict[str, Any], file_hash: str, now: datetime
) -> int:
    """The id of this structure's version, created if new. ``file_hash`` follows the latest file
    that produced it, since that is the file a worker will import to run it."""
    statement = _insert(session, DagVersion).values(
        dag_id=serialized["dag_id"],
        hash=hash_structure(serialized),
        file_hash=file_hash,
        serialized=serialized,
        created_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[DagVersion.dag_id, DagVersion.hash],
        set_={"file_hash": statement.excluded.file_hash},
    ).returning(DagVersion.id)
    version_id = await session.scalar(statement)
    assert version_id is not None  # RETURNING of an upsert always yields the row
    return int(version_id)


async def _upsert_dag(
    session: AsyncSession,
    fileloc: str,
    serialized: dict[str, Any],
    version_id: int,
    now: datetime,
) -> None:
    """Create or refresh the DAG row; ``is_paused`` is the user's choice and survives parses."""
    fields = {
        "fileloc": fileloc,
        "is_active": True,
        "schedule": serialized.get("schedule"),
        "description": serialized.get("description"),
        "tags": list(serialized.get("tags") or []),
        "version_id": version_id,
        "last_parsed_at": now,
    }
    statement = _insert(session, Dag).values(dag_id=serialized["dag_id"], is_paused=False, **fields)
    await session.execute(statement.on_conflict_do_update(index_elements=[Dag.dag_id], set_=fields))


async def _upsert_import_error(
    session: AsyncSession, fileloc: str, error: str, now: datetime
) -> None:
    fields = {"error": error, "created_at": now}
    statement = _insert(session, ImportError_).values(fileloc=fileloc, **fields)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[ImportError_.fileloc], set_=fields)
    )


async def _upsert_file(
    session: AsyncSession, fileloc: str, file_hash: str, dag_ids: list[str], now: datetime
) -> None:
    fields = {"file_hash": file_hash, "dag_ids": dag_ids, "last_parsed_at": now}
    statement = _insert(session, DagFile).values(fileloc=fileloc, **fields)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[DagFile.fileloc], set_=fields)
    )
