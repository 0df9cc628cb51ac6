"""``/dags/{dag_id}``: one DAG, in tabs (``?tab=``): grid, graph, runs, details and code.

A tab link loads the tab's body alone when htmx asks (``HX-Request``) and the whole page
otherwise, from the same partial. Grid, graph and runs are live (``@live_view("dag")``): the
page's stream re-renders the open tab after every committed change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.api.deps import Service, Session, service_of
from app.api.pagination import Page, paginate
from app.dashboard.graph_layout import layout_dag
from app.dashboard.live import live_view
from app.dashboard.next_runs import upcoming_intervals
from app.dashboard.schedule_words import describe_schedule
from app.dashboard.sessions import UiSession, UiViewer
from app.dashboard.templating import render, templates
from app.db.models import Dag, DagRun, TaskInstance, Webhook, WebhookDelivery
from app.state import ServiceState
from weir.errors import NotFound
from weir.schedule import Interval
from weir.states import DagRunState, TaskState

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Tab = Literal["grid", "graph", "runs", "details", "code"]
TABS: tuple[Tab, ...] = get_args(Tab)
LIVE_TABS = frozenset({"grid", "graph", "runs"})
GRID_RUNS = 25
RUNS_PER_PAGE = 25
DELIVERIES_PER_HOOK = 10
MAX_SOURCE_BYTES = 1_000_000

# Glyphs as weir.css draws them (SVG text cannot use its ::before rules).
GLYPHS = {
    "success": "✓", "failed": "✗", "running": "▶", "queued": "●", "scheduled": "◷",
    "up_for_retry": "↻", "up_for_reschedule": "⏲", "skipped": "⤳", "upstream_failed": "!",
    "none": "○",
}  # fmt: skip
# The state a mapped task shows for its instances: the one that needs attention first.
_ATTENTION = [
    TaskState.FAILED,
    TaskState.UPSTREAM_FAILED,
    TaskState.RUNNING,
    TaskState.UP_FOR_RETRY,
    TaskState.UP_FOR_RESCHEDULE,
    TaskState.QUEUED,
    TaskState.SCHEDULED,
    TaskState.NONE,
    TaskState.SKIPPED,
    TaskState.SUCCESS,
]


@dataclass(frozen=True, slots=True)
class Cell:
    """One task of one run as the grid and graph show it; ``summary`` ("3/4") for mapped tasks:
    instances that succeeded out of all."""

    state: str
    href: str
    summary: str | None = None


def run_url(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> str:
    url = f"{run_url(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return url if map_index is None else f"{url}?map_index={map_index}"


def summarise(dag_id: str, run_id: str, task_id: str, instances: list[tuple[int, str]]) -> Cell:
    """A task's cell from its ``(map_index, state)`` instances: an unmapped task (or a mapped
    one not expanded yet) as it is; an expanded one by the state needing attention first,
    linking to the first instance in that state."""
    expanded = [(index, state) for index, state in instances if index >= 0]
    if not expanded:
        return Cell(instances[0][1], task_url(dag_id, run_id, task_id))
    rank = {state.value: i for i, state in enumerate(_ATTENTION)}
    state = min((s for _, s in expanded), key=lambda s: rank.get(s, len(rank)))
    first = min(index for index, s in expanded if s == state)
    done = sum(s == TaskState.SUCCESS for _, s in expanded)
    return Cell(state, task_url(dag_id, run_id, task_id, first), f"{done}/{len(expanded)}")


@dataclass(frozen=True, slots=True)
class DagPageQuery:
    """The page's query string, read leniently (a bad value falls back to the default), so the
    page and its live stream understand the same links."""

    tab: Tab = "grid"
    run_id: str | None = None
    state: DagRunState | None = None
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> DagPageQuery:
        tab = params.get("tab", "grid")
        run_id = params.get("run_id") or None
        state = params.get("state") or None
        page = params.get("page", "1")
        return cls(
            tab=next((t for t in TABS if t == tab), "grid"),
            run_id=run_id if run_id and len(run_id) <= 250 and "\x00" not in run_id else None,
            state=DagRunState(state) if state in set(DagRunState) else None,
            page=min(int(page), 100_000) if page.isdigit() and int(page) >= 1 else 1,
        )

    def link(self, dag_id: str, **changes: Any) -> str:
        """This page's URL with some parameters changed (defaults left out)."""
        values = {"tab": self.tab, "run_id": self.run_id, "state": self.state, "page": self.page}
        values.update(changes)
        defaults = {"tab": "grid", "page": 1}
        query = {k: v for k, v in values.items() if v is not None and defaults.get(k) != v}
        return f"/dags/{dag_id}" + (f"?{urlencode(query)}" if query else "")

    def live_url(self, dag_id: str) -> str:
        """The page's event stream, rendering the same tab with the same parameters."""
        values = {"dag_id": dag_id, "tab": self.tab, "run_id": self.run_id, "state": self.state,
                  "page": self.page}  # fmt: skip
        return "/ui/live/dag?" + urlencode({k: v for k, v in values.items() if v is not None})


async def _load_dag(session: AsyncSession, dag_id: str) -> Dag:
    dag = await session.get(Dag, dag_id)
    if dag is None:
        raise NotFound(f"There is no DAG {dag_id!r}; the DAGs page lists those there are.")
    return dag


async def _recent_runs(session: AsyncSession, dag_id: str) -> list[DagRun]:
    """The DAG's last runs, newest first."""
    statement = select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc())
    return list(await session.scalars(statement.limit(GRID_RUNS)))


async def _grid(session: AsyncSession, service: ServiceState, dag: Dag) -> dict[str, Any]:
    """The last runs (oldest left) by the tasks (topological order); one query for all cells."""
    runs = (await _recent_runs(session, dag.dag_id))[::-1]
    rows = (
        await session.execute(
            select(
                TaskInstance.dag_run_id,
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.state,
            ).where(TaskInstance.dag_run_id.in_([r.id for r in runs]))
        )
    ).all()
    instances: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for run_pk, task_id, map_index, state in rows:
        instances.setdefault((task_id, run_pk), []).append((map_index, state))
    structure = await service.versions.get(session, dag.version_id)
    task_ids = list(structure.tasks)
    task_ids += sorted({task_id for task_id, _ in instances} - set(task_ids))
    by_pk = {run.id: run for run in runs}
    cells: dict[tuple[str, int], Cell] = {
        key: summarise(dag.dag_id, by_pk[key[1]].run_id, key[0], found)
        for key, found in instances.items()
    }
    return {"runs": runs, "task_ids": task_ids, "cells": cells}


async def _graph(
    session: AsyncSession, service: ServiceState, dag: Dag, run_id: str | None
) -> dict[str, Any]:
    """The structure of the chosen run (default: the latest) laid out, coloured by its states."""
    choices = await _recent_runs(session, dag.dag_id)
    run = next((r for r in choices if r.run_id == run_id), None)
    if run is None and run_id is not None:  # an older run, named by a link
        run = await session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id)
        )
    if run is None and choices:
        run = choices[0]
    structure = await service.versions.get(session, run.version_id if run else dag.version_id)
    cells: dict[str, Cell] = {}
    if run is not None:
        instances: dict[str, list[tuple[int, str]]] = {}
        rows = await session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_run_id == run.id
            )
        )
        for task_id, map_index, state in rows:
            instances.setdefault(task_id, []).append((map_index, state))
        cells = {t: summarise(dag.dag_id, run.run_id, t, found) for t, found in instances.items()}
    edges = [(up, task.task_id) for task in structure.tasks.values() for up in task.upstream]
    layout = layout_dag(list(structure.tasks), edges)
    return {"run": run, "choices": choices, "layout": layout, "cells": cells, "glyphs": GLYPHS}


async def _runs(session: AsyncSession, dag: Dag, query: DagPageQuery) -> dict[str, Any]:
    statement = select(DagRun).where(DagRun.dag_id == dag.dag_id)
    if query.state is not None:
        statement = statement.where(DagRun.state == query.state)
    page = Page(RUNS_PER_PAGE, (query.page - 1) * RUNS_PER_PAGE, "-id")
    runs, total = await paginate(
        session, statement, page, sort_keys={"id": DagRun.id}, default="-id", tiebreak=DagRun.id
    )
    last_page = max(1, -(-total // RUNS_PER_PAGE))
    return {"runs": runs, "total": total, "last_page": last_page, "states": list(DagRunState)}


async def _details(session: AsyncSession, service: ServiceState, dag: Dag) -> dict[str, Any]:
    options = (await service.versions.get(session, dag.version_id)).options
    planned = None
    if dag.next_logical_date is not None:
        planned = Interval(
            dag.next_data_interval_start or dag.next_logical_date,
            dag.next_data_interval_end or dag.next_logical_date,
            dag.next_run_after or dag.next_logical_date,
        )
    return {
        "options": options,
        "next_runs": upcoming_intervals(options, planned, service.clock.now()),
        **await _webhooks(session, service, dag),
    }


async def _webhooks(session: AsyncSession, service: ServiceState, dag: Dag) -> dict[str, Any]:
    """The DAG's hooks (never their secret: only whether one is set) and each one's latest
    deliveries, ranked in SQL so that one query serves all hooks."""
    hooks = (
        await session.execute(
            select(
                Webhook.hook_id,
                Webhook.signature,
                Webhook.is_active,
                Webhook.origin,
                (func.length(Webhook.secret_encrypted) > 0).label("has_secret"),
            )
            .where(Webhook.dag_id == dag.dag_id)
            .order_by(Webhook.hook_id)
        )
    ).all()
    base = service.settings.api_url.rstrip("/")
    deliveries: dict[str, list[WebhookDelivery]] = {}
    found = {"hooks": hooks, "deliveries": deliveries, "hook_base_url": f"{base}/api/v1/webhooks"}
    if not hooks:
        return found
    ranked = (
        select(
            WebhookDelivery,
            func.row_number()
            .over(partition_by=WebhookDelivery.hook_id, order_by=WebhookDelivery.id.desc())
            .label("rank"),
        )
        .where(WebhookDelivery.hook_id.in_([h.hook_id for h in hooks]))
        .subquery()
    )
    delivery = aliased(WebhookDelivery, ranked)
    for row in await session.scalars(
        select(delivery).where(ranked.c.rank <= DELIVERIES_PER_HOOK).order_by(ranked.c.id.desc())
    ):
        deliveries.setdefault(row.hook_id, []).append(row)
    return found


async def _code(service: ServiceState, dag: Dag) -> dict[str, Any]:
    """The DAG file's text, read only from inside the DAGs folder."""
    folder = service.settings.dags_folder.resolve()
    path = (folder / dag.fileloc).resolve()
    if not path.is_relative_to(folder):
        return {"source": None, "problem": "The file lies outside the DAGs folder: not shown."}
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            return {"source": None, "problem": f"The file is too large to show ({size} bytes)."}
        data = await asyncio.to_thread(path.read_bytes)
    except OSError:
        return {"source": None, "problem": "The file is no longer in the DAGs folder."}
    return {"source": data.decode("utf-8", errors="replace").splitlines(), "problem": None}


async def _tab_context(
    session: AsyncSession, service: ServiceState, dag: Dag, query: DagPageQuery
) -> dict[str, Any]:
    options = (await service.versions.get(session, dag.version_id)).options
    schedule = describe_schedule(
        options.get("schedule"), options.get("schedule_interval"), options.get("timezone", "UTC")
    )
    context: dict[str, Any] = {"dag": dag, "query": query, "tabs": TABS, "schedule": schedule}
    if query.tab == "grid":
        context.update(await _grid(session, service, dag))
    elif query.tab == "graph":
        context.update(await _graph(session, service, dag, query.run_id))
    elif query.tab == "runs":
        context.update(await _runs(session, dag, query))
    elif query.tab == "details":
        context.update(await _details(session, service, dag))
    else:
        context.update(await _code(service, dag))
    return context


@router.get("/dags/{dag_id}", response_class=HTMLResponse)
async def dag_page(
    request: Request,
    session: Session,
    service: Service,
    ui: UiViewer,
    dag_id: str = Path(max_length=250, pattern=r"^[^\x00]+$"),
) -> HTMLResponse:
    """The full page, or only the tab's body when htmx switches tabs."""
    dag = await _load_dag(session, dag_id)
    query = DagPageQuery.parse(request.query_params)
    context = await _tab_context(session, service, dag, query)
    partial = request.headers.get("HX-Request") and not request.headers.get(
        "HX-History-Restore-Request"
    )
    template = "partials/dag_page_body.html" if partial else "pages/dag.html"
    response = render(request, template, ui, **context, live_tabs=LIVE_TABS, run_url=run_url)
    response.headers["Vary"] = "HX-Request"
    return response


@live_view("dag")
async def live_dag(
    request: Request, session: AsyncSession, ui: UiSession, params: Mapping[str, str]
) -> dict[str, str]:
    """The open tab's fragment, if that tab is live."""
    query = DagPageQuery.parse(params)
    dag = await session.get(Dag, params.get("dag_id", ""))
    if dag is None or query.tab not in LIVE_TABS:
        return {}
    context = await _tab_context(session, service_of(request), dag, query)
    context.update(request=request, ui=ui, live_tabs=LIVE_TABS, run_url=run_url)
    template = templates.get_template(f"partials/dag_page_{query.tab}.html")
    return {f"dag-page-{query.tab}": template.render(context)}
