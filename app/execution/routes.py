"""``/execution/v1``: the API workers use. Authorised by the attempt token alone (invariant 6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES
from app.api.v1.connections import ConnIdPath, get_connection_row, reveal_connection
from app.api.v1.variables import KeyPath, get_variable_row, reveal_variable
from app.execution import service as execution
from app.scheduler.outcomes import load_task_instance, record_reschedule
from app.scheduler.wakeup import wake_scheduler
from app.state import ServiceState
from weir.errors import Conflict
from weir.messages import (
    ClaimAccepted,
    ClaimRequest,
    FinishAccepted,
    FinishRequest,
    HeartbeatAccepted,
    HeartbeatBatch,
    HeartbeatBatchAccepted,
    HeartbeatRequest,
    LogAppend,
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


def _bearer(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Missing attempt token.", {"WWW-Authenticate": "Bearer"})
    return token


Token = Annotated[str, Depends(_bearer)]


def _authorise(service: Service, token: str, ti_id: int, attempt: int) -> None:
    if not service.tokens.is_valid(token, ti_id, attempt):
        raise HTTPException(401, "The token does not authorise this attempt.")


@router.post("/task-instances/{ti_id}/claim", operation_id="execution-claim")
async def claim(
    ti_id: int, body: ClaimRequest, token: Token, service: Service, session: Session
) -> ClaimAccepted:
    _authorise(service, token, ti_id, body.attempt)
    return await execution.claim_attempt(
        session,
        ti_id,
        body,
        service.versions,
        service.clock.now(),
        lease_seconds=service.settings.lease_seconds,
        heartbeat_interval=service.settings.heartbeat_interval,
    )


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
    _authorise(service, token, ti_id, body.attempt)
    await execution.append_log(session, ti_id, body, service.clock.now())
    return Response(status_code=204)


@router.post("/task-instances/{ti_id}/finish", operation_id="execution-finish")
async def finish(
    ti_id: int, body: FinishRequest, token: Token, service: Service, session: Session
) -> FinishAccepted:
    _authorise(service, token, ti_id, body.attempt)
    now = service.clock.now()
    if body.state == "reschedule":
        state = await _reschedule(session, ti_id, body, service, now)
    else:
        state = await execution.finish_attempt(session, ti_id, body, service.versions, now)
    await wake_scheduler(session)
    return FinishAccepted(state=state)


async def _reschedule(
    session: AsyncSession, ti_id: int, body: FinishRequest, service: ServiceState, now: datetime
) -> TaskState:
    """A sensor's "not yet": its log tail first (the log is written while the attempt is still
    running), then ``record_reschedule``; 409 when the attempt is no longer current."""
    if body.log:
        await execution.append_log(
            session, ti_id, LogAppend(attempt=body.attempt, data=body.log), now
        )
    ti = await load_task_instance(session, ti_id)
    state = None
    if ti is not None:
        state = await record_reschedule(session, ti, body.attempt, now, service.versions)
    if state is None:
        raise Conflict(
            f"Attempt {body.attempt} of task instance {ti_id} cannot be rescheduled: it is not "
            "the current attempt in the running state."
        )
    return state


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
    ti_id: int, conn_id: ConnIdPath, attempt: AttemptQuery, token: Token, service: Service,
    session: Session,
) -> Connection:  # fmt: skip
    """The connection in clear, for the running attempt's task; 404 if it does not exist."""
    await _authorise_running(service, session, token, ti_id, attempt)
    return reveal_connection(await get_connection_row(session, conn_id), service.secrets)


@router.get("/task-instances/{ti_id}/variables/{key}", operation_id="execution-variable-get")
async def read_variable(
    ti_id: int, key: KeyPath, attempt: AttemptQuery, token: Token, service: Service,
    session: Session,
) -> VariableValue:  # fmt: skip
    """The variable's value in clear, for the running attempt's task; 404 if it does not exist."""
    await _authorise_running(service, session, token, ti_id, attempt)
    return reveal_variable(await get_variable_row(session, key), service.secrets)
