"""Capacity: which scheduled task instances may be queued now (pools, ``max_active_tasks``).

The decision itself (``admit``) is pure: it walks the candidates by ``priority_weight`` (highest
first), then by id (the order they were scheduled), and takes each one that fits. A candidate that
does not fit waits, with a ``Block`` saying why; the others may still go (a small task may pass a
big one that does not fit, as in Airflow: pools are never left idle behind one large task).

The queries around it read what is taken: a pool's occupied slots are the ``pool_slots`` of its
task instances in ``queued`` or ``running``, a DAG's active tasks the count of its task
instances in those states. ``lock_capacity`` makes that read safe across replicas; see there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    bindparam,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, DagVersion, Pool, TaskInstance
from app.db.statements import prebuilt
from weir.states import TaskState

__all__ = [
    "ACTIVE_STATES",
    "Block",
    "Candidate",
    "Capacity",
    "admit",
    "dag_option",
    "describe",
    "holders",
    "load_capacity",
    "lock_capacity",
]

ACTIVE_STATES = (TaskState.QUEUED, TaskState.RUNNING)
DEFAULT_MAX_ACTIVE_TASKS = 16
HOLDERS_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scheduled task instance that wants to be queued."""

    id: int
    dag_id: str
    pool: str
    pool_slots: int
    priority_weight: int


@dataclass(frozen=True, slots=True)
class Block:
    """Why one candidate waits: ``code`` is stable; the rest fills the words (``describe``)."""

    code: str  # pool_missing | pool_too_small | pool_full | max_active_tasks
    subject: str  # the pool name or the DAG id
    taken: int = 0
    limit: int = 0
    needed: int = 0


@dataclass
class Capacity:
    """Limits and what is taken of them; ``admit`` updates ``*_taken`` as it admits."""

    pool_size: dict[str, int] = field(default_factory=dict)  # pools that exist
    pool_taken: dict[str, int] = field(default_factory=dict)
    dag_limit: dict[str, int] = field(default_factory=dict)
    dag_taken: dict[str, int] = field(default_factory=dict)

    def block_for(self, c: Candidate) -> Block | None:
        size = self.pool_size.get(c.pool)
        if size is None:
            return Block("pool_missing", c.pool)
        if c.pool_slots > size:
            return Block("pool_too_small", c.pool, limit=size, needed=c.pool_slots)
        taken = self.pool_taken.get(c.pool, 0)
        if taken + c.pool_slots > size:
            return Block("pool_full", c.pool, taken, size, c.pool_slots)
        limit = self.dag_limit.get(c.dag_id, DEFAULT_MAX_ACTIVE_TASKS)
        active = self.dag_taken.get(c.dag_id, 0)
        if active >= limit:
            return Block("max_active_tasks", c.dag_id, active, limit, 1)
        return None

    def take(self, c: Candidate) -> None:
        self.pool_taken[c.pool] = self.pool_taken.get(c.pool, 0) + c.pool_slots
        self.dag_taken[c.dag_id] = self.dag_taken.get(c.dag_id, 0) + 1


def admit(
    candidates: Iterable[Candidate], capacity: Capacity
) -> tuple[list[Candidate], dict[int, Block]]:
    """Split candidates into those queued now (in priority order) and those that wait."""
    admitted: list[Candidate] = []
    blocked: dict[int, Block] = {}
    for c in sorted(candidates, key=lambda c: (-c.priority_weight, c.id)):
        block = capacity.block_for(c)
        if block is None:
            capacity.take(c)
            admitted.append(c)
        else:
            blocked[c.id] = block
    return admitted, blocked


def describe(block: Block, holder_labels: Sequence[str] = ()) -> str:
    """The words of a wait reason: what is wrong, who is in the way, and how to fix it."""
    name = block.subject
    if block.code == "pool_missing":
        return (
            f"pool {name!r} does not exist: create it (POST /api/v1/pools with "
            f'{{"name": "{name}", "slots": 4}}, admin role) or change the task\'s pool'
        )
    if block.code == "pool_too_small":
        return (
            f"needs {block.needed} slot(s) but pool {name!r} has only {block.limit}: give the pool "
            f"more slots (PATCH /api/v1/pools/{name}) or lower the task's pool_slots"
        )
    listing = _listing(holder_labels)
    if block.code == "pool_full":
        by = f" by {listing}" if listing else ""
        return (
            f"pool {name!r} is full: {block.taken} of {block.limit} slots taken{by}; "
            f"this task needs {block.needed}"
        )
    return (
        f"DAG {name!r} has {block.taken} of {block.limit} tasks queued or running "
        f"(max_active_tasks={block.limit})" + (f": {listing}" if listing else "")
    )


def _listing(labels: Sequence[str]) -> str:
    """At most ``HOLDERS_SHOWN`` names; ``holders`` fetches one more to tell that others exist."""
    shown = ", ".join(labels[:HOLDERS_SHOWN])
    return f"{shown} and others" if len(labels) > HOLDERS_SHOWN else shown


async def lock_capacity(session: AsyncSession, pools: Iterable[str], dags: Iterable[str]) -> None:
    """Serialize capacity decisions per pool and per DAG across replicas (PostgreSQL).

    Two replicas queueing different tasks of one pool at once would each count the same free
    slot and both take it. So, before reading occupancy, each transaction takes a
    transaction-scoped advisory lock per pool and per DAG it may fill, in one sorted order (no
    deadlock between queuers: they wait only for each other's advisory locks, always acquired in
    the same order, and hold no other lock another queuer waits for: their candidate rows were
    taken with ``SKIP LOCKED`` or are new). Under READ COMMITTED each statement after the lock
    sees what the previous holder committed, so the count is exact. Advisory locks rather than
    ``pool`` row locks, because a DAG limit has no row of its own and a ``dag`` row lock would
    collide with the DAG processor and the pause API. SQLite needs none: every transaction there
    is ``BEGIN IMMEDIATE``, so queuers run one after another.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({f"weir.pool:{p}" for p in pools} | {f"weir.dag:{d}" for d in dags})
    if keys:  # one statement; unnest keeps the sorted order, in which the locks are taken
        await session.execute(_LOCK_KEYS, {"keys": keys})


_LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n) ORDER BY n"
)


def dag_option(name: str, default: int) -> ColumnElement[int]:
    """An integer DAG option of the DAG's current version, read in SQL (no structure load)."""
    return func.coalesce(DagVersion.serialized[name].as_integer(), default)


async def load_capacity(
    session: AsyncSession, pools: Iterable[str], dags: Iterable[str]
) -> Capacity:
    """Limits and occupancy of these pools and DAGs, as committed (call after the lock)."""
    pools, dags = sorted(set(pools)), sorted(set(dags))
    parts = prebuilt("capacity.load", _occupancy)
    rows = await session.execute(parts, {"pools": pools, "dags": dags})
    capacity = Capacity()
    found: dict[str, dict[str, int]] = {
        "pool_size": capacity.pool_size,
        "pool_taken": capacity.pool_taken,
        "dag_limit": capacity.dag_limit,
        "dag_taken": capacity.dag_taken,
    }
    for kind, name, value in rows:  # one round trip for the four
        found[kind][name] = int(value)
    return capacity


def _occupancy() -> CompoundSelect[Any]:
    """Pool sizes and use, DAG limits and use, for the pools and DAGs bound as ``pools`` and
    ``dags``, in one ``UNION ALL``."""
    active = TaskInstance.state.in_(ACTIVE_STATES)
    pools: BindParameter[str] = bindparam("pools", expanding=True)
    dags: BindParameter[str] = bindparam("dags", expanding=True)
    return union_all(
        select(literal("pool_size"), Pool.name, Pool.slots).where(Pool.name.in_(pools)),
        select(literal("pool_taken"), TaskInstance.pool, func.sum(TaskInstance.pool_slots))
        .where(active, TaskInstance.pool.in_(pools))
        .group_by(TaskInstance.pool),
        select(
            literal("dag_limit"),
            Dag.dag_id,
            dag_option("max_active_tasks", DEFAULT_MAX_ACTIVE_TASKS),
        )
        .join(DagVersion, DagVersion.id == Dag.version_id)
        .where(Dag.dag_id.in_(dags)),
        select(literal("dag_taken"), TaskInstance.dag_id, func.count())
        .where(active, TaskInstance.dag_id.in_(dags))
        .group_by(TaskInstance.dag_id),
    )


async def holders(session: AsyncSession, block: Block) -> list[str]:
    """Who holds what ``block`` waits for: ``dag.task (run …)`` of a few active instances."""
    if block.code not in ("pool_full", "max_active_tasks"):
        return []
    column = TaskInstance.pool if block.code == "pool_full" else TaskInstance.dag_id
    rows = await session.execute(
        select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.run_id)
        .where(TaskInstance.state.in_(ACTIVE_STATES), column == block.subject)
        .order_by(TaskInstance.id)
        .limit(HOLDERS_SHOWN + 1)
    )
    return [f"{r.dag_id}.{r.task_id} (run {r.run_id})" for r in rows]
