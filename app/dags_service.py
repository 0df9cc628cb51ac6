"""DAG use cases shared by the REST API and the dashboard: pausing and unpausing, and the reads
both of them list DAGs with (tag filter, known tags, each DAG's last runs).

Helpers take the caller's session and never commit: the route owns the transaction, so the
change, its audit entry and the scheduler's wake-up commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, func, or_, select, true, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import record
from app.auth import Principal
from app.db.models import Dag, DagRun
from app.live import mark_changed
from app.scheduler.due_runs import plan_next_run
from app.scheduler.versions import VersionCache
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound

__all__ = ["RunSquare", "find_dag", "known_tags", "last_runs", "set_paused", "with_any_tag"]


async def find_dag(session: AsyncSession, dag_id: str) -> Dag:
    dag = await session.get(Dag, dag_id)
    if dag is None:
        raise NotFound(f"DAG {dag_id!r} does not exist; `weir dags list` shows the DAGs there are.")
    return dag


async def set_paused(
    session: AsyncSession,
    versions: VersionCache,
    principal: Principal,
    dag_id: str,
    paused: bool,
    now: datetime,
    *,
    origin: str = "api",
) -> Dag:
    """Pause or unpause, audited. Unpausing plans the next run from ``now``, so the intervals
    missed while paused are not all created at once (only the latest, unless the DAG has
    catchup). Asking for the state the DAG is already in changes and records nothing."""
    dag = await find_dag(session, dag_id)
    if dag.is_paused == paused:
        return dag
    dag.is_paused = paused
    await session.flush()
    await record(
        session, principal, "dag.pause" if paused else "dag.unpause", dag_id, now, origin=origin
    )
    mark_changed(session)
    if not paused:
        options = (await versions.get(session, dag.version_id)).options
        await plan_next_run(session, dag_id, options, now)
        await session.refresh(dag)
        await wake_scheduler(session)
    return dag


def with_any_tag(statement: Select[Dag], tags: Sequence[str], dialect: str) -> Select[Dag]:
    """DAGs carrying any of ``tags``. Tags are a JSON list: matched inside the database (a
    JSON containment on PostgreSQL, ``json_each`` on SQLite), so pagination stays in SQL."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        tags_jsonb = type_coerce(Dag.tags, JSONB)
        return statement.where(or_(*(tags_jsonb.contains([tag]) for tag in tags)))
    each = func.json_each(Dag.tags).table_valued("value")
    return statement.where(select(each.c.value).where(each.c.value.in_(tags)).exists())


async def known_tags(session: AsyncSession) -> list[str]:
    """Every tag some DAG carries, sorted: one query unnesting the JSON lists in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        each = func.jsonb_array_elements_text(type_coerce(Dag.tags, JSONB)).table_valued("value")
    else:
        each = func.json_each(Dag.tags).table_valued("value")
    # A function in FROM may read the row before it (implicitly LATERAL on both databases).
    statement = select(each.c.value).select_from(Dag).join(each, true()).distinct()
    return sorted(str(tag) for tag in (await session.scalars(statement)))


class RunSquare(NamedTuple):
    """What a run's square needs: its link and its state (no ORM object per run)."""

    dag_id: str
    run_id: str
    state: str


async def last_runs(
    session: AsyncSession, dag_ids: Iterable[str], per_dag: int
) -> dict[str, list[RunSquare]]:
    """The latest ``per_dag`` runs of each DAG, oldest first, in one query rather than one per
    DAG."""
    wanted = list(dag_ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(DagRun.dag_id, DagRun.run_id, DagRun.state)
        .where(DagRun.id.in_(_last_run_ids(session, wanted, per_dag)))
        .order_by(DagRun.id)
    )
    runs: dict[str, list[RunSquare]] = {dag_id: [] for dag_id in wanted}
    for dag_id, run_id, state in rows:
        runs[dag_id].append(RunSquare(dag_id, run_id, state))
    return runs


def _last_run_ids(session: AsyncSession, dag_ids: list[str], per_dag: int) -> Select[Any]:
    """Ids of each DAG's latest runs. PostgreSQL: a ``LATERAL`` top-N per DAG, ``per_dag`` index
    reads each however long the history (a window function there numbers every run of the DAGs
    first: 50,000 for a busy one). SQLite, which has no ``LATERAL``: the window function."""
    if session.get_bind().dialect.name == "postgresql":
        dags = select(Dag.dag_id).where(Dag.dag_id.in_(dag_ids)).subquery()
        recent = (
            select(DagRun.id)
            .where(DagRun.dag_id == dags.c.dag_id)
            .order_by(DagRun.id.desc())
            .limit(per_dag)
            .lateral()
        )
        return select(recent.c.id).select_from(dags).join(recent, true())
    ranked = (
        select(
            DagRun.id,
            func.row_number()
            .over(partition_by=DagRun.dag_id, order_by=DagRun.id.desc())
            .label("rank"),
        )
        .where(DagRun.dag_id.in_(dag_ids))
        .subquery()
    )
    return select(ranked.c.id).where(ranked.c.rank <= per_dag)
