"""``/ui/logs/{dag_id}/{run_id}/{task_id}``: one attempt's log as server-sent events.

The stream sends the text there is, then only what is appended (``log`` events, escaped HTML that
htmx appends with ``hx-swap="beforeend"``), and ends with a ``complete`` event once the attempt
has finished and every byte was sent (the page closes its EventSource on it: ``sse-close``).

It reads by byte offset with the REST API's slicing (``app.api.v1.task_logs.read_log``), waking on
the change feed, which the execution API marks when a worker appends text. Each ``log`` event's
id is the offset it ends at, so a browser that reconnects by itself (sending ``Last-Event-ID``)
resumes where it stopped instead of repeating the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from markupsafe import escape
from sse_starlette import EventSourceResponse

from app.api.deps import Service
from app.api.v1.dags import IdPath
from app.api.v1.task_logs import read_log
from app.api.v1.tasks import get_task_instance
from app.dashboard.sessions import UiViewer
from app.db.models import TaskInstance
from app.state import ServiceState
from weir.errors import NotFound

__all__ = ["CHUNK_BYTES", "router"]

router = APIRouter(include_in_schema=False)
CHUNK_BYTES = 256 * 1024
"""At most this much text per event: a long log arrives in pieces the page appends one by one."""
KEEPALIVE_SECONDS = 15.0


def _resume_offset(last_event_id: str | None) -> int:
    """Where a reconnecting browser stopped (its ``Last-Event-ID``); 0 for a fresh stream."""
    if last_event_id and last_event_id.isdigit() and len(last_event_id) < 15:
        return int(last_event_id)
    return 0


@router.get("/ui/logs/{dag_id}/{run_id}/{task_id}")
async def stream_log(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    request: Request,
    service: Service,
    _ui: UiViewer,
    map_index: Annotated[int | None, Query(ge=-1, le=1_000_000)] = None,
    attempt: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    """The log of ``attempt`` (the current one by default) of one task instance, live."""
    async with service.database.sessions() as session:
        ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    wanted = ti.attempt if attempt is None else attempt
    if wanted > ti.attempt:
        raise NotFound(f"Task {task_id!r} has no attempt {wanted} yet; it is at {ti.attempt}.")
    events = _log_events(request, service, ti.id, wanted, _resume_offset(last_event_id))
    return EventSourceResponse(events, ping=KEEPALIVE_SECONDS)


async def _log_events(
    request: Request, service: ServiceState, ti_id: int, attempt: int, offset: int
) -> AsyncIterator[dict[str, Any]]:
    feed = service.database.changes
    seen = feed.version
    while not feed.closed and not await request.is_disconnected():
        async with service.database.sessions() as session:
            ti = await session.get(TaskInstance, ti_id)
            if ti is None:
                yield {"event": "complete", "data": "The task instance was deleted."}
                return
            piece = await read_log(session, ti, attempt, offset, CHUNK_BYTES)
        if piece.content:
            yield {"event": "log", "id": str(piece.next_offset), "data": str(escape(piece.content))}
        offset = piece.next_offset
        if piece.complete:
            yield {"event": "complete", "data": f"Attempt {attempt} has ended."}
            return
        if piece.next_offset - piece.offset >= CHUNK_BYTES:
            continue  # a full piece: more is probably waiting already
        seen = await feed.wait(seen, timeout=KEEPALIVE_SECONDS, logs=True)
