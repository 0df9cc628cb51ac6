"""Claims (``queued -> running``), as many as a worker sends together, in a few set-based
statements: one compare-and-set for the lot, one insert of their attempt records, one read of
what each winner needs to run. Each claim is still fenced and answered on its own (invariant 2):
won, the worker's own earlier claim (its answer was lost and it asked again), refused (409), or
unknown (404: its run was deleted).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagRun, TaskAttempt, TaskInstance
from app.db.statements import prebuilt
from app.db.transitions import set_attempt_states
from app.scheduler.mapping import load_results, map_element
from app.scheduler.versions import DagStructure, TaskSpec, VersionCache
from weir.messages import ClaimAccepted, TaskKind
from weir.params import merge_params
from weir.states import TaskState
from weir.task import MAP_ELEMENT_INPUT

__all__ = ["Claim", "ClaimRefused", "claim_attempts"]


@dataclass(frozen=True, slots=True)
class Claim:
    task_instance_id: int
    attempt: int
    worker: str


@dataclass(frozen=True, slots=True)
class ClaimRefused:
    status: int  # 404: no such task instance; 409: not this worker's to run
    detail: str


_COLUMNS = (
    TaskInstance.id,
    TaskInstance.state,
    TaskInstance.attempt,
    TaskInstance.worker,
    TaskInstance.dag_id,
    TaskInstance.run_id,
    TaskInstance.task_id,
    TaskInstance.map_index,
    DagRun.id.label("dag_run_pk"),
    DagRun.version_id,
    DagRun.conf,
    DagRun.logical_date,
    DagRun.data_interval_start,
    DagRun.data_interval_end,
)


async def claim_attempts(
    session: AsyncSession,
    claims: Sequence[Claim],
    versions: VersionCache,
    now: datetime,
    *,
    lease_seconds: float,
    heartbeat_interval: float,
) -> list[ClaimAccepted | ClaimRefused]:
    """Claim every attempt that is still queued; the answers are in the order of ``claims``."""
    if not claims:
        return []
    lease = now + timedelta(seconds=lease_seconds)
    by_worker: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for claim in claims:
        by_worker[claim.worker].append((claim.task_instance_id, claim.attempt))
    won: set[tuple[int, int]] = set()
    for worker, attempts in by_worker.items():
        moved = await set_attempt_states(
            session,
            attempts,
            expected=TaskState.QUEUED,
            target=TaskState.RUNNING,
            worker=worker,
            start_date=now,
            end_date=None,
            lease_expires_at=lease,
        )
        won.update(pair for pair in attempts if pair[0] in moved)
    if won:
        records = {  # keyed by attempt: a claim repeated in one batch is recorded once
            (c.task_instance_id, c.attempt): {
                "task_instance_id": c.task_instance_id,
                "attempt": c.attempt,
                "state": TaskState.RUNNING,
                "worker": c.worker,
                "start_date": now,
            }
            for c in claims
            if (c.task_instance_id, c.attempt) in won
        }
        await session.execute(insert(TaskAttempt), list(records.values()))
    ids = {claim.task_instance_id for claim in claims}
    statement = prebuilt(
        "claims.read",
        lambda: (
            select(*_COLUMNS)
            .join(DagRun, DagRun.id == TaskInstance.dag_run_id)
            .where(TaskInstance.id.in_(bindparam("ids", expanding=True)))
        ),
    )
    rows = {row.id: row for row in await session.execute(statement, {"ids": list(ids)})}
    structures = await versions.get_many(session, {row.version_id for row in rows.values()})
    answers: list[ClaimAccepted | ClaimRefused] = []
    for claim in claims:
        row = rows.get(claim.task_instance_id)
        if row is None:
            answers.append(ClaimRefused(404, _unknown(claim)))
        elif (claim.task_instance_id, claim.attempt) in won or _is_own_claim(row, claim):
            structure = structures[row.version_id]
            answers.append(
                await _accepted(session, row, structure, claim, lease_seconds, heartbeat_interval)
            )
        else:
            answers.append(ClaimRefused(409, _stale(claim)))
    return answers


def _is_own_claim(row: Any, claim: Claim) -> bool:
    """A worker whose claim answer was lost retries it: the same worker gets the same answer."""
    return bool(
        row.state == TaskState.RUNNING
        and row.attempt == claim.attempt
        and row.worker == claim.worker
    )


async def _accepted(
    session: AsyncSession,
    row: Any,
    structure: DagStructure,
    claim: Claim,
    lease_seconds: float,
    heartbeat_interval: float,
) -> ClaimAccepted:
    spec = structure.tasks[row.task_id]
    inputs = await _load_inputs(session, row.dag_run_pk, structure, spec, row.map_index)
    return ClaimAccepted(
        task_instance_id=claim.task_instance_id,
        attempt=claim.attempt,
        dag_id=row.dag_id,
        run_id=row.run_id,
        task_id=row.task_id,
        fileloc=structure.fileloc,
        file_hash=structure.file_hash,
        kind=TaskKind(spec.kind),
        inputs=inputs,
        conf=row.conf,
        params=merge_params(structure.options.get("params") or {}, row.conf),
        logical_date=row.logical_date,
        data_interval_start=row.data_interval_start,
        data_interval_end=row.data_interval_end,
        map_index=row.map_index,
        timeout=spec.timeout,
        heartbeat_interval=heartbeat_interval,
        lease_seconds=lease_seconds,
    )


async def _load_inputs(
    session: AsyncSession, dag_run_id: int, structure: DagStructure, spec: TaskSpec, map_index: int
) -> dict[str, Any]:
    """The upstream results the task takes (a mapped upstream's as a list by map index), and for
    a mapped instance its element under ``MAP_ELEMENT_INPUT``. No query for a task that takes
    nothing, which is what keeps a fan-out of no-op tasks to set-based statements only."""
    inputs = await load_results(session, dag_run_id, spec.inputs, structure) if spec.inputs else {}
    if spec.mapped is not None and map_index >= 0:
        element = await map_element(session, dag_run_id, structure, spec.mapped, map_index)
        inputs[MAP_ELEMENT_INPUT] = element
    return inputs


def _unknown(claim: Claim) -> str:
    return f"Task instance {claim.task_instance_id} does not exist (its run was deleted?)."


def _stale(claim: Claim) -> str:
    return (
        f"Attempt {claim.attempt} of task instance {claim.task_instance_id} cannot be claimed: "
        "it is not the current attempt in the expected state (another worker claimed it, it was "
        "cleared, or it lapsed)."
    )
