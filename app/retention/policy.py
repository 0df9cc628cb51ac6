"""Which finished runs retention may delete: the policy (global settings, overridden per DAG by the
options of its latest version) and the SQL that picks a DAG's expired runs.

The rule, documented in docs/scheduling/retention.md: a finished run is kept only while it is
within *both* limits, "at most N runs and at most D days", and the most recent finished run of a
DAG is always kept, so every DAG still shows how it last ended (Airflow's ``db clean`` keeps the
last run for the same reason). Unfinished runs are never touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, DagRun, DagVersion
from weir.config import Settings
from weir.states import FINISHED_DAG_RUN_STATES

__all__ = ["RetentionPolicy", "claim_expired_runs", "load_policies"]

_Boundary = tuple[datetime, int]
"""A run's place in its DAG's history: ``(logical_date, id)``, newest first."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How much finished history one DAG keeps; ``None`` means no limit of that kind."""

    days: float | None = None
    runs: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(days=settings.retention_days, runs=settings.retention_runs)

    def for_dag(self, options: Mapping[str, Any]) -> RetentionPolicy:
        """This (global) policy with a DAG's own limits applied, each one separately: a DAG's
        ``None`` inherits the global limit, its ``0`` lifts it, any other value replaces it."""
        return RetentionPolicy(
            days=_override(self.days, options.get("retention_days")),
            runs=_override(self.runs, options.get("retention_runs")),
        )

    @property
    def is_active(self) -> bool:
        return self.days is not None or self.runs is not None


def _override(default: Any, value: Any) -> Any:
    if value is None:
        return default
    return value or None  # 0: no limit for this DAG


async def load_policies(
    session: AsyncSession, default: RetentionPolicy
) -> dict[str, RetentionPolicy]:
    """The effective policy of every DAG that has one, read from its latest parsed version (a
    DAG whose file is gone keeps the policy it last declared)."""
    rows = await session.execute(
        select(Dag.dag_id, DagVersion.serialized)
        .join(DagVersion, DagVersion.id == Dag.version_id)
        .order_by(Dag.dag_id)
    )
    policies = {dag_id: default.for_dag(serialized) for dag_id, serialized in rows}
    return {dag_id: policy for dag_id, policy in policies.items() if policy.is_active}


async def claim_expired_runs(
    session: AsyncSession, dag_id: str, policy: RetentionPolicy, now: datetime, limit: int
) -> list[DagRun]:
    """Lock and return up to ``limit`` expired runs of ``dag_id``, oldest ids first.

    ``SKIP LOCKED`` lets two replicas clean side by side, each run deleted by one of them; it
    also skips a run a user is changing right now (PostgreSQL re-checks the state filter of a
    row it waited for). SQLite ignores the clause: there is one writer at a time anyway.
    """
    finished = _finished(dag_id)
    latest = await _nth_newest(session, finished, 1)
    if latest is None:
        return []
    expired: list[ColumnElement[bool]] = []
    if policy.runs is not None:
        nth = await _nth_newest(session, finished, policy.runs)
        if nth is not None:
            expired.append(_older_than(nth))
    if policy.days is not None:
        cutoff = now - timedelta(days=policy.days)
        expired.append(func.coalesce(DagRun.end_date, DagRun.logical_date) < cutoff)
    if not expired:
        return []
    runs = await session.scalars(
        select(DagRun)
        .where(finished, _older_than(latest), or_(*expired))
        .order_by(DagRun.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(runs)


def _finished(dag_id: str) -> ColumnElement[bool]:
    return and_(DagRun.dag_id == dag_id, DagRun.state.in_(FINISHED_DAG_RUN_STATES))


async def _nth_newest(
    session: AsyncSession, finished: ColumnElement[bool], n: int
) -> _Boundary | None:
    """The place of the ``n``-th most recent finished run (by logical date, as the dashboard
    lists runs), or None when there are fewer."""
    row = (
        await session.execute(
            select(DagRun.logical_date, DagRun.id)
            .where(finished)
            .order_by(DagRun.logical_date.desc(), DagRun.id.desc())
            .offset(n - 1)
            .limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1])


def _older_than(boundary: _Boundary) -> ColumnElement[bool]:
    logical_date, run_pk = boundary
    return or_(
        DagRun.logical_date < logical_date,
        and_(DagRun.logical_date == logical_date, DagRun.id < run_pk),
    )
