"""``/dags/{dag_id}/runs/{run_id}/tasks/{task_id}``: one task instance, live — its summary and wait
reason, its attempts, the log of one attempt streaming while it runs (``log_stream``), its return
value and the params it ran with; operators clear it (with or without downstream) or mark it.

``?map_index=`` picks one instance of a mapped task; ``?attempt=`` pins the log to one attempt,
otherwise the log follows the current attempt (a retry swaps in the new attempt's log).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session, service_of
from app.api.v1.dags import IdPath
from app.api.v1.runs import get_run
from app.api.v1.tasks import get_task_instance
from app.audit import record
from app.dashboard.live import live_view
from app.dashboard.pages.run import live_param, toast_reply, wait_reasons
from app.dashboard.sessions import UiOperator, UiSession, UiViewer
from app.dashboard.templating import render, templates
from app.db.models import TaskAttempt, XCom
from app.scheduler.clearing import ClearRequest, clear_task_instances
from app.scheduler.marking import mark_task
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound
from weir.params import merge_params
from weir.states import TaskState

__all__ = ["pretty_json", "router"]

router = APIRouter(include_in_schema=False)
TASK = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
MAX_VALUE_CHARS = 20_000
"""A return value longer than this (as indented JSON) is cut, with a note: pages stay light."""
MapIndex = Annotated[int | None, Query(ge=-1, le=1_000_000)]
Attempt = Annotated[int | None, Query(ge=0, le=1_000_000)]
FRAGMENTS = {
    "ti-summary": "partials/ti_page_summary.html",
    "ti-attempts": "partials/ti_page_attempts.html",
    "ti-log": "partials/ti_page_log.html",
    "ti-value": "partials/ti_page_value.html",
}


def pretty_json(value: Any, limit: int = MAX_VALUE_CHARS) -> tuple[str, int]:
    """Indented JSON cut at ``limit`` characters, with its full length (to say what was cut)."""
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return text[:limit], len(text)


async def _context(
    request: Request,
    session: AsyncSession,
    ids: tuple[str, str, str],
    map_index: int | None,
    pinned: int | None,
) -> dict[str, Any]:
    dag_id, run_id, task_id = ids
    run = await get_run(session, dag_id, run_id)
    ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    if pinned is not None and pinned > ti.attempt:
        raise NotFound(f"Task {task_id!r} has no attempt {pinned} yet; it is at {ti.attempt}.")
    structure = await service_of(request).versions.get(session, run.version_id)
    attempts = (
        await session.scalars(
            select(TaskAttempt)
            .where(TaskAttempt.task_instance_id == ti.id)
            .order_by(TaskAttempt.attempt)
        )
    ).all()
    stored = (
        await session.execute(select(XCom.value).where(XCom.task_instance_id == ti.id))
    ).first()
    value = pretty_json(stored.value) if stored is not None else None
    params = merge_params(structure.options.get("params") or {}, run.conf)
    return {
        "dag_id": dag_id, "run": run, "ti": ti, "attempts": attempts,
        "reason": (await wait_reasons(request, session, [ti])).get(ti.id),
        "shown_attempt": ti.attempt if pinned is None else pinned, "pinned": pinned,
        "value": value, "params_json": pretty_json(params)[0], "max_value_chars": MAX_VALUE_CHARS,
    }  # fmt: skip


@router.get(TASK, response_class=HTMLResponse)
async def task_instance_page(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    request: Request,
    session: Session,
    ui: UiViewer,
    map_index: MapIndex = None,
    attempt: Attempt = None,
) -> HTMLResponse:
    context = await _context(request, session, (dag_id, run_id, task_id), map_index, attempt)
    return render(request, "pages/task_instance.html", ui, **context)


def _optional_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.lstrip("-").isdigit() or len(raw) > 8:
        raise NotFound(f"This live view needs an integer {name!r} parameter.")
    return int(raw)


@live_view("ti")
async def live_task_instance(
    request: Request, session: AsyncSession, ui: UiSession, params: Mapping[str, str]
) -> dict[str, str]:
    ids = (
        live_param(params, "dag_id"),
        live_param(params, "run_id"),
        live_param(params, "task_id"),
    )
    map_index, pinned = _optional_int(params, "map_index"), _optional_int(params, "attempt")
    context = {"request": request, "ui": ui,
               **await _context(request, session, ids, map_index, pinned)}  # fmt: skip
    return {name: templates.get_template(template).render(context)
            for name, template in FRAGMENTS.items()}  # fmt: skip


@router.post(f"{TASK}/clear", response_class=HTMLResponse)
async def clear_task_action(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    request: Request,
    session: Session,
    service: Service,
    ui: UiOperator,
    map_index: MapIndex = None,
    include_downstream: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    """Run the task again as its next attempt (``clearing``), and everything downstream of it
    with ``include_downstream``; a running attempt is abandoned, a finished run reopened."""
    run = await get_run(session, dag_id, run_id)
    ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    structure = await service.versions.get(session, run.version_id)
    now = service.clock.now()
    chosen = ClearRequest(
        task_ids=frozenset([task_id]), include_downstream=include_downstream,
        map_index=ti.map_index if ti.map_index >= 0 else None,
    )  # fmt: skip
    cleared = await clear_task_instances(
        session, run, structure, chosen, ui.principal.username, now
    )
    if not cleared:
        return toast_reply(request, "Nothing to clear", f"{task_id} has not run yet.")
    detail = {"task_ids": sorted({c.task_id for c in cleared}), "task_instances": len(cleared),
              "include_downstream": include_downstream}  # fmt: skip
    await record(session, ui.principal, "task_instance.clear", f"{dag_id}/{run_id}", now,
                 detail=detail, origin="dashboard")  # fmt: skip
    await wake_scheduler(session)
    return toast_reply(request, "Cleared", f"{len(cleared)} task instance(s) will run again.")


@router.post(f"{TASK}/mark", response_class=HTMLResponse)
async def mark_task_action(
    dag_id: IdPath,
    run_id: IdPath,
    task_id: IdPath,
    state: Annotated[Literal["success", "failed"], Form()],
    request: Request,
    session: Session,
    service: Service,
    ui: UiOperator,
    map_index: MapIndex = None,
) -> HTMLResponse:
    """Set the instance's state by hand (``marking``): a running attempt ends there."""
    run = await get_run(session, dag_id, run_id)
    ti = await get_task_instance(session, dag_id, run_id, task_id, map_index)
    structure = await service.versions.get(session, run.version_id)
    now = service.clock.now()
    changed = await mark_task(
        session, run, structure, task_id, target=TaskState(state), map_index=ti.map_index,
        include_downstream=False, actor=ui.principal.username, now=now,
    )  # fmt: skip
    if not changed:
        return toast_reply(request, "Nothing changed", f"{task_id} is {state} already.")
    detail = {"task_id": task_id, "state": state, "task_instances": len(changed)}
    await record(session, ui.principal, "task_instance.mark", f"{dag_id}/{run_id}", now,
                 detail=detail, origin="dashboard")  # fmt: skip
    await wake_scheduler(session)
    return toast_reply(request, f"Marked {state}", f"{task_id} is now {state}.")
