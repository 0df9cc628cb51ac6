"""``/api/v1/pools``: named budgets of slots shared by the tasks that name them.

Anyone with a token reads pools and how many slots are taken; only admins change them, since a
pool throttles every DAG that uses it. A change that may free capacity wakes the scheduler, so
waiting tasks take new slots at once.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.validation import Description, Name
from app.audit import record
from app.auth import Admin, Viewer
from app.db.models import Pool, TaskInstance
from app.scheduler.capacity import ACTIVE_STATES
from app.scheduler.queueing import relabel_pool_waits
from app.scheduler.wakeup import wake_scheduler
from weir.errors import Conflict, NotFound
from weir.states import TaskState
from weir.task_options import DEFAULT_POOL

__all__ = ["PoolCreate", "PoolPatch", "PoolPublic", "PoolsPublic", "router"]

router = APIRouter(prefix="/api/v1/pools", tags=["pools"], responses=PROBLEM_RESPONSES)


class PoolCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "warehouse", "slots": 4, "description": "Our small warehouse"}]
        },
    )

    name: Name
    slots: int = Field(
        ge=0, le=1_000_000, description="How many slots tasks may take at once; 0 holds all."
    )
    description: Description | None = None


class PoolPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"slots": 8}]})

    slots: int | None = Field(default=None, ge=0, le=1_000_000)
    description: Description | None = None


class PoolPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "default_pool",
                    "slots": 128,
                    "description": "Tasks that name no pool",
                    "queued_slots": 1,
                    "running_slots": 3,
                    "open_slots": 124,
                    "scheduled_tasks": 0,
                }
            ]
        }
    )

    name: str
    slots: int
    description: str | None
    queued_slots: int = Field(description="Slots taken by queued task instances.")
    running_slots: int = Field(description="Slots taken by running task instances.")
    open_slots: int = Field(description="Slots free now (never below 0).")
    scheduled_tasks: int = Field(description="Task instances waiting for this pool.")


class PoolsPublic(BaseModel):
    pools: list[PoolPublic]
    total: int


async def _usage(session: Session, names: list[str]) -> dict[tuple[str, str], int]:
    """Slots taken per (pool, state), and waiting task counts under state ``scheduled``."""
    taken = await session.execute(
        select(TaskInstance.pool, TaskInstance.state, func.sum(TaskInstance.pool_slots))
        .where(TaskInstance.pool.in_(names), TaskInstance.state.in_(ACTIVE_STATES))
        .group_by(TaskInstance.pool, TaskInstance.state)
    )
    usage = {(pool, str(state)): int(n) for pool, state, n in taken}
    waiting = await session.execute(
        select(TaskInstance.pool, func.count())
        .where(TaskInstance.pool.in_(names), TaskInstance.state == TaskState.SCHEDULED)
        .group_by(TaskInstance.pool)
    )
    usage.update({(pool, TaskState.SCHEDULED.value): int(n) for pool, n in waiting})
    return usage


async def _public(session: Session, pools: list[Pool]) -> list[PoolPublic]:
    usage = await _usage(session, [p.name for p in pools])
    result = []
    for pool in pools:
        queued = usage.get((pool.name, TaskState.QUEUED.value), 0)
        running = usage.get((pool.name, TaskState.RUNNING.value), 0)
        result.append(
            PoolPublic(
                name=pool.name,
                slots=pool.slots,
                description=pool.description,
                queued_slots=queued,
                running_slots=running,
                open_slots=max(pool.slots - queued - running, 0),
                scheduled_tasks=usage.get((pool.name, TaskState.SCHEDULED.value), 0),
            )
        )
    return result


async def _get_pool(session: Session, name: str) -> Pool:
    pool = await session.get(Pool, name)
    if pool is None:
        raise NotFound(
            f"Pool {name!r} does not exist; GET /api/v1/pools lists the pools there are."
        )
    return pool


@router.get("", operation_id="pools-list")
async def list_pools(session: Session, _token: Viewer) -> PoolsPublic:
    """Every pool with its slots and how many are taken (pools are few: no paging)."""
    pools = list((await session.scalars(select(Pool).order_by(Pool.name))).all())
    return PoolsPublic(pools=await _public(session, pools), total=len(pools))


@router.get("/{name}", operation_id="pools-get")
async def read_pool(name: str, session: Session, _token: Viewer) -> PoolPublic:
    """One pool with its slots and how many are taken."""
    return (await _public(session, [await _get_pool(session, name)]))[0]


@router.post("", operation_id="pools-create", status_code=201)
async def create_pool(
    body: PoolCreate, session: Session, service: Service, principal: Admin
) -> PoolPublic:
    """Create a pool; tasks naming it take its slots from then on."""
    if await session.get(Pool, body.name) is not None:
        raise Conflict(f"Pool {body.name!r} exists already; PATCH /api/v1/pools/{body.name}.")
    pool = Pool(name=body.name, slots=body.slots, description=body.description)
    session.add(pool)
    await session.flush()
    await record(session, principal, "pool.create", body.name, service.clock.now(),
                 detail={"slots": body.slots})  # fmt: skip
    await relabel_pool_waits(session, body.name, body.slots)
    await wake_scheduler(session)  # tasks waiting with pool_missing may go now
    return (await _public(session, [pool]))[0]


@router.patch("/{name}", operation_id="pools-update")
async def update_pool(
    name: str, body: PoolPatch, session: Session, service: Service, principal: Admin
) -> PoolPublic:
    """Change a pool's slots or description; more slots let waiting tasks go at once."""
    pool = await _get_pool(session, name)
    if body.slots is not None:
        pool.slots = body.slots
    if "description" in body.model_fields_set:
        pool.description = body.description
    await session.flush()
    await record(session, principal, "pool.update", name, service.clock.now(),
                 detail=body.model_dump(exclude_unset=True, exclude={"description"}))  # fmt: skip
    await relabel_pool_waits(session, name, pool.slots)
    await wake_scheduler(session)  # more slots: waiting tasks may go now
    return (await _public(session, [pool]))[0]


@router.delete("/{name}", operation_id="pools-delete", status_code=204)
async def delete_pool(name: str, session: Session, service: Service, principal: Admin) -> Response:
    """Delete a pool; its waiting tasks then wait with ``pool_missing`` until it is back."""
    if name == DEFAULT_POOL:
        raise Conflict(f"{DEFAULT_POOL!r} cannot be deleted: tasks that name no pool use it.")
    await session.delete(await _get_pool(session, name))
    await relabel_pool_waits(session, name, None)
    await record(session, principal, "pool.delete", name, service.clock.now())
    return Response(status_code=204)
