"""``/execution/v1``: the API workers use. Authorised by the attempt token alone (invariant 6)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.connections import ConnIdPath, get_connection_row, reveal_connection
from app.api.v1.variables import KeyPath, get_variable_row, reveal_variable
from app.execution import service as execution
from app.execution.batch import Limits, run_batch
from app.scheduler.outcomes import load_task_instance
from app.scheduler.wakeup import wake_relay, wake_scheduler
from app.state import ServiceState
from weir.errors import Conflict, NotFound
from weir.messages import (
    ClaimAccepted,
    ClaimItem,
    ClaimRequest,
    ExecutionBatch,
    ExecutionBatchAnswer,
    FinishAccepted,
    FinishItem,
    FinishRequest,
    HeartbeatAccepted,
    HeartbeatBatch,
    HeartbeatBatchAccepted,
    HeartbeatRequest,
    ItemAnswer,
    LogAppend,
    LogItem,
    ReleaseRequest,
)
from weir.resources import Connection, VariableValue
from weir.states import TaskState

__all__ = ["router"]

# Workers' own contract (docs/architecture.md), not part of the public document and its clients.
router = APIRouter(
    prefix="/execution/v1",
    tags=["execution"],
    responses=PROBLEM_RESPONSES,
    include_in_schema=False,
)


async def _bearer(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Missing attempt token.", {"WWW-Authenticate": "Bearer"})
    return token


Token = Annotated[str, Depends(_bearer)]


def _authorise(service: Service, token: str, ti_id: int, attempt: int) -> None:
    if not service.tokens.is_valid(token, ti_id, attempt):
        raise HTTPException(401, "The token does not authorise this attempt.")


@router.post("/batch", operation_id="execution-batch")
async def batch(body: ExecutionBatch, service: Service, session: Session) -> ExecutionBatchAnswer:
    """What a worker had ready together (claims, reports, log text), in one transaction; each
    item carries its own token and is answered on its own, as its one-item call would be."""
    return ExecutionBatchAnswer(answers=await _run(session, service, body.items))


async def _run(
    session: AsyncSession, service: ServiceState, items: Sequence[ClaimItem | FinishItem | LogItem]
) -> list[ItemAnswer]:
    """The one way claims, reports and log text are recorded (batched or not)."""
    settings = service.settings
    outcome = await run_batch(
        session,
        items,
        service.tokens,
        service.versions,
        service.clock.now(),
        Limits(settings.lease_seconds, settings.heartbeat_interval),
    )
    if outcome.wake_scheduler is not None:
        await wake_scheduler(session, full=outcome.wake_scheduler)
    if outcome.queued:
        wake_relay(session)
    return outcome.answers


async def _one(
    session: AsyncSession, service: ServiceState, item: ClaimItem | FinishItem | LogItem
) -> ItemAnswer:
    """A one-item call (the token came in its header): its answer, or the error it maps to."""
    (answer,) = await _run(session, service, [item])
    if answer.status == 401:
        raise HTTPException(401, answer.detail)
    if answer.status == 404:
        raise NotFound(answer.detail or "")
    if answer.status == 409:
        raise Conflict(answer.detail or "")
    return answer


@router.post("/task-instances/{ti_id}/claim", operation_id="execution-claim")
async def claim(
    ti_id: int, body: ClaimRequest, token: Token, service: Service, session: Session
) -> ClaimAccepted:
    item = ClaimItem(task_instance_id=ti_id, token=token, **dict(body))
    answer = await _one(session, service, item)
    assert answer.claim is not None
    return answer.claim


@router.post("/task-instances/{ti_id}/heartbeat", operation_id="execution-heartbeat")
async def heartbeat(
    ti_id: int, body: HeartbeatRequest, token: Token, service: Service, session: Session
) -> HeartbeatAccepted:
    _authorise(service, token, ti_id, body.attempt)
    return await execution.renew_lease(
        session, ti_id, body.attempt, service.clock.now(), service.settings.lease_seconds
    )


@router.post("/heartbeats", operation_id="execution-heartbeats")
async def heartbeats(
    body: HeartbeatBatch, service: Service, session: Session
) -> HeartbeatBatchAccepted:
    """A worker's batched heartbeat: each beat carries its own attempt token and is renewed or
    refused on its own (a bad token refuses only its beat)."""
    authorised = [
        (beat.task_instance_id, beat.attempt)
        for beat in body.beats
        if service.tokens.is_valid(beat.token, beat.task_instance_id, beat.attempt)
    ]
    now = service.clock.now()
    lease_seconds = service.settings.lease_seconds
    renewed = await execution.renew_leases(session, authorised, now, lease_seconds)
    return HeartbeatBatchAccepted(
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        renewed=sorted(renewed),
        refused=sorted({beat.task_instance_id for beat in body.beats} - renewed),
    )


@router.post("/task-instances/{ti_id}/logs", status_code=204, operation_id="execution-logs")
async def logs(
    ti_id: int, body: LogAppend, token: Token, service: Service, session: Session
) -> Response:
    await _one(session, service, LogItem(task_instance_id=ti_id, token=token, **dict(body)))
    return Response(status_code=204)


@router.post("/task-instances/{ti_id}/finish", operation_id="execution-finish")
async def finish(
    ti_id: int, body: FinishRequest, token: Token, service: Service, session: Session
) -> FinishAccepted:
    item = FinishItem(task_instance_id=ti_id, token=token, **dict(body))
    answer = await _one(session, service, item)
    assert answer.finish is not None
    return answer.finish


@router.post("/task-instances/{ti_id}/release", status_code=204, operation_id="execution-release")
async def release(
    ti_id: int, body: ReleaseRequest, token: Token, service: Service, session: Session
) -> Response:
    _authorise(service, token, ti_id, body.attempt)
    await execution.release_attempt(session, ti_id, body.attempt)
    await wake_scheduler(session)
    return Response(status_code=204)


# --- What a running task reads: its connections and variables (invariant 6) ---------------------

AttemptQuery = Annotated[int, Query(ge=0, description="The attempt the token was issued for.")]


async def _authorise_running(
    service: ServiceState, session: AsyncSession, token: str, ti_id: int, attempt: int
) -> None:
    """Secrets go only to the attempt that is running now: a stale or finished one gets 409."""
    _authorise(service, token, ti_id, attempt)
    ti = await load_task_instance(session, ti_id)
    if ti is None or ti.attempt != attempt or ti.state != TaskState.RUNNING:
        raise Conflict(
            f"Attempt {attempt} of task instance {ti_id} is not running: only a running attempt "
            "may read connections and variables."
        )


@router.get(
    "/task-instances/{ti_id}/connections/{conn_id}", operation_id="execution-connection-get"
)
async def read_connection(
    ti_id: int,
    conn_id: ConnIdPath,
    attempt: AttemptQuery,
    token: Token,
    service: Service,
    session: Session,
) -> Connection:
    """The connection in clear, for the running attempt's task; 404 if it does not exist."""
    await _authorise_running(service, session, token, ti_id, attempt)
    return reveal_connection(await get_connection_row(session, conn_id), service.secrets)


@router.get("/task-instances/{ti_id}/variables/{key}", operation_id="execution-variable-get")
async def read_variable(
    ti_id: int,
    key: KeyPath,
    attempt: AttemptQuery,
    token: Token,
    service: Service,
    session: Session,
) -> VariableValue:
    """The variable's value in clear, for the running attempt's task; 404 if it does not exist."""
    await _authorise_running(service, session, token, ti_id, attempt)
    return reveal_variable(await get_variable_row(session, key), service.secrets)
