"""``/dags/{dag_id}/runs/{run_id}``: one run, live — its tasks with their states and wait reasons,
a Gantt chart, its conf; operators mark it or clear its tasks.

Actions call the use cases the REST API calls (``app.scheduler.marking``,
``app.scheduler.clearing``), audited with ``origin="dashboard"``, and answer with a toast: the
page itself changes through its live stream, like everybody else's view of the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session, service_of
from app.api.v1.dags import IdPath
from app.api.v1.runs import get_run
from app.audit import record
from app.dashboard.live import live_view
from app.dashboard.sessions import UiOperator, UiSession, UiViewer
from app.dashboard.templating import render, templates
from app.db.models import TaskInstance
from app.scheduler.clearing import ClearRequest, clear_task_instances
from app.scheduler.marking import mark_run
from app.scheduler.reasons import BrokerView, explain
from app.scheduler.wakeup import wake_scheduler
from weir.errors import NotFound
from weir.states import DagRunState

__all__ = [
    "MAX_INSTANCES",
    "GanttBar",
    "WaitReasons",
    "gantt_bars",
    "live_param",
    "router",
    "toast_reply",
    "wait_reasons",
]

router = APIRouter(include_in_schema=False)

MAX_INSTANCES = 500
"""Task instances shown on one run page (a mapped task can have thousands; the API pages them)."""
MAX_EXPLAINED = 25
"""Waiting instances whose reason is worked out per render: each costs a query or a broker call."""
WaitReasons = dict[int, tuple[str, str]]
FRAGMENTS = {
    "run-summary": "partials/run_page_summary.html",
    "run-tasks": "partials/run_page_tasks.html",
    "run-gantt": "partials/run_page_gantt.html",
}


@dataclass(frozen=True, slots=True)
class GanttBar:
    """One row of the chart: percentages of the run's time span."""

    ti: TaskInstance
    queued_left: float
    queued_width: float
    left: float
    width: float


def gantt_bars(
    instances: Sequence[TaskInstance], run_start: datetime | None, now: datetime
) -> tuple[list[GanttBar], float]:
    """Bars positioned on the span from the run's start (or its first queued instance) to the
    last end (or now, while something runs); returns them with the span in seconds."""
    moments = [m for ti in instances for m in (ti.queued_at, ti.start_date) if m is not None]
    origin = min([*moments, *([run_start] if run_start else [])], default=now)
    ends = [ti.end_date or now for ti in instances if ti.start_date or ti.queued_at]
    span = max((max(ends, default=now) - origin).total_seconds(), 1.0)

    def percent(moment: datetime) -> float:
        return round(min(max((moment - origin).total_seconds() / span, 0.0), 1.0) * 100, 2)

    bars = []
    for ti in instances:
        queued_left = queued_width = left = width = 0.0
        if ti.queued_at is not None:
            queued_left = percent(ti.queued_at)
            queued_width = percent(ti.start_date or ti.end_date or now) - queued_left
        if ti.start_date is not None:
            left = percent(ti.start_date)
            width = max(percent(ti.end_date or now) - left, 0.4)
        bars.append(GanttBar(ti, queued_left, max(queued_width, 0.0), left, width))
    return bars, span


def broker_view(request: Request) -> BrokerView:
    view: BrokerView = request.app.state.loops.relay
    return view


async def wait_reasons(
    request: Request, session: AsyncSession, instances: Iterable[TaskInstance]
) -> WaitReasons:
    """``ti.id -> (wait_code, wait_reason)`` for the first waiting instances ("why is it not
    running?", ``app.scheduler.reasons``); beyond ``MAX_EXPLAINED`` the stored reason shows."""
    service, broker = service_of(request), broker_view(request)
    reasons: WaitReasons = {}
    for ti in instances:
        if len(reasons) >= MAX_EXPLAINED:
            if ti.wait_code:
                reasons[ti.id] = (ti.wait_code, ti.wait_reason or "")
            continue
        found = await explain(session, ti, service.versions, broker)
        if found is not None:
            reasons[ti.id] = found
    return reasons


def live_param(params: Mapping[str, str], name: str) -> str:
    """A live view's required query parameter; absent or unusable ones answer 404."""
    value = params.get(name, "")
    if not value or len(value) > 250 or "\x00" in value:
        raise NotFound(f"This live view needs a valid {name!r} parameter.")
    return value


def toast_reply(request: Request, title: str, detail: str | None = None) -> HTMLResponse:
    """A success toast for an htmx action (the live stream refreshes the page itself)."""
    response = render(request, "partials/toast.html", None, title=title, detail=detail, kind="ok")
    response.headers["HX-Retarget"] = "#toasts"
    response.headers["HX-Reswap"] = "beforeend"
    return response


async def _context(request: Request, session: AsyncSession, dag_id: str, run_id: str) -> Any:
    run = await get_run(session, dag_id, run_id)
    instances = list(
        (
            await session.scalars(
                select(TaskInstance)
                .where(TaskInstance.dag_run_id == run.id)
                .order_by(TaskInstance.id)
                .limit(MAX_INSTANCES)
            )
        ).all()
    )
    total = len(instances)
    if total == MAX_INSTANCES:
        count = select(func.count()).where(TaskInstance.dag_run_id == run.id)
        total = int(await session.scalar(count) or 0)
    now = service_of(request).clock.now()
    bars, span = gantt_bars(instances, run.start_date, now)
    return {
        "dag_id": dag_id,
        "run": run,
        "instances": instances,
        "total_instances": total,
        "reasons": await wait_reasons(request, session, instances),
        "bars": bars,
        "span": span,
        "conf_json": json.dumps(run.conf, indent=2, sort_keys=True, default=str),
        "now": now,
    }


@router.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    dag_id: IdPath, run_id: IdPath, request: Request, session: Session, ui: UiViewer
) -> HTMLResponse:
    return render(request, "pages/run.html", ui, **await _context(request, session, dag_id, run_id))


@live_view("run")
async def live_run(
    request: Request, session: AsyncSession, ui: UiSession, params: Mapping[str, str]
) -> dict[str, str]:
    dag_id, run_id = live_param(params, "dag_id"), live_param(params, "run_id")
    context = {"request": request, "ui": ui, **await _context(request, session, dag_id, run_id)}
    return {name: templates.get_template(template).render(context)
            for name, template in FRAGMENTS.items()}  # fmt: skip


@router.post("/dags/{dag_id}/runs/{run_id}/mark", response_class=HTMLResponse)
async def mark_run_action(
    dag_id: IdPath,
    run_id: IdPath,
    state: Annotated[Literal["success", "failed"], Form()],
    request: Request,
    session: Session,
    service: Service,
    ui: UiOperator,
) -> HTMLResponse:
    """End the run in ``state``; its unfinished tasks take it too (``marking.mark_run``)."""
    run = await get_run(session, dag_id, run_id)
    now = service.clock.now()
    target = DagRunState(state)
    changed = await mark_run(session, run, target=target, actor=ui.principal.username, now=now)
    detail = {"state": state, "task_instances": len(changed)}
    await record(session, ui.principal, "run.mark", f"{dag_id}/{run_id}", now,
                 detail=detail, origin="dashboard")  # fmt: skip
    await wake_scheduler(session)
    return toast_reply(request, f"Run marked {state}", f"{len(changed)} unfinished task(s) too.")


@router.post("/dags/{dag_id}/runs/{run_id}/clear", response_class=HTMLResponse)
async def clear_run_action(
    dag_id: IdPath,
    run_id: IdPath,
    request: Request,
    session: Session,
    service: Service,
    ui: UiOperator,
    only_failed: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    """Run the run's tasks again (only the failed ones with ``only_failed``), each as its next
    attempt (``clearing.clear_task_instances``); a finished run is reopened."""
    run = await get_run(session, dag_id, run_id)
    now = service.clock.now()
    structure = await service.versions.get(session, run.version_id)
    request_ = ClearRequest(only_failed=only_failed)
    cleared = await clear_task_instances(
        session, run, structure, request_, ui.principal.username, now
    )
    if not cleared:
        what = "failed task" if only_failed else "task that has run"
        return toast_reply(request, "Nothing to clear", f"The run has no {what}.")
    tasks = sorted({ti.task_id for ti in cleared})
    detail = {"task_ids": tasks, "task_instances": len(cleared), "only_failed": only_failed}
    await record(session, ui.principal, "task_instance.clear", f"{dag_id}/{run_id}", now,
                 detail=detail, origin="dashboard")  # fmt: skip
    await wake_scheduler(session)
    return toast_reply(request, "Cleared", f"{len(cleared)} task instance(s) will run again.")
