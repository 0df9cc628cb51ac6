"""``/``: the DAGs page. Every DAG with its schedule in words, next run, last runs as squares,
tags, owner, a pause switch and a trigger button; filters by name, tag and latest-run state;
paged in SQL; live over the page's one event stream (which keeps the page's filters).

A page costs a fixed number of queries whatever its size: the filtered page and its count, the
last runs of its DAGs in one window query, their versions (cached per process), the import
errors. The trigger form lives in ``dags_trigger``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session, service_of
from app.api.pagination import Page, paginate
from app.dags_service import RunSquare, known_tags, last_runs, set_paused, with_any_tag
from app.dashboard.live import live_view
from app.dashboard.pages import dags_trigger
from app.dashboard.pages.dags_trigger import DagIdPath
from app.dashboard.schedule_words import ScheduleWords, describe_schedule
from app.dashboard.sessions import UiOperator, UiSession, UiViewer
from app.dashboard.templating import render, templates
from app.db.models import Dag, DagRun, ImportError_
from app.scheduler.versions import VersionCache
from weir.states import DagRunState

__all__ = ["DagFilters", "DagRow", "dag_rows", "router"]

router = APIRouter(include_in_schema=False)
router.include_router(dags_trigger.router)

PAGE_SIZE = 50
RUNS_SHOWN = 10
IMPORT_ERRORS_SHOWN = 50
NEVER_RUN = "none"
RUN_STATES = (*(state.value for state in DagRunState), NEVER_RUN)
NO_OWNER = "—"


@dataclass(frozen=True, slots=True)
class DagFilters:
    """The page's query: ``?q=&tag=&state=&page=``. Values that could not come from the page's
    own form (too long, NUL bytes, unknown states) are dropped rather than refused."""

    q: str | None = None
    tag: str | None = None
    state: str | None = None
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DagFilters:
        def text(name: str, limit: int) -> str | None:
            value = query.get(name, "").strip()
            return value if value and len(value) <= limit and "\x00" not in value else None

        state = query.get("state")
        page = query.get("page", "")
        return cls(
            q=text("q", 250),
            tag=text("tag", 100),
            state=state if state in RUN_STATES else None,
            page=int(page) if page.isdigit() and 0 < int(page) <= 100_000 else 1,
        )

    @property
    def active(self) -> bool:
        return bool(self.q or self.tag or self.state)

    def query_string(self, **changes: Any) -> str:
        """``q=…&page=2`` for links and the live stream: only what is set."""
        values = {
            "q": self.q, "tag": self.tag, "state": self.state, "page": self.page, **changes,
        }  # fmt: skip
        if values["page"] == 1:
            del values["page"]
        return urlencode({name: value for name, value in values.items() if value})


@dataclass(frozen=True, slots=True)
class DagRow:
    """What one table row shows (``partials/dags_row.html``)."""

    dag: Dag
    runs: list[RunSquare]
    schedule: ScheduleWords
    owner: str
    params: int


def _filtered(filters: DagFilters, dialect: str) -> Select[Dag]:
    statement = select(Dag)
    if filters.q:
        escaped = filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(func.lower(Dag.dag_id).like(f"%{escaped.lower()}%", "\\"))
    if filters.tag:
        statement = with_any_tag(statement, [filters.tag], dialect)
    if filters.state == NEVER_RUN:
        statement = statement.where(~select(DagRun.id).where(DagRun.dag_id == Dag.dag_id).exists())
    elif filters.state:
        # The latest run's state, one lookup on the (dag_id, id) index per candidate DAG.
        latest = (
            select(DagRun.state)
            .where(DagRun.dag_id == Dag.dag_id)
            .order_by(DagRun.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        statement = statement.where(latest == filters.state)
    return statement


async def dag_rows(
    session: AsyncSession, versions: VersionCache, dags: Sequence[Dag]
) -> list[DagRow]:
    """Rows for ``dags``: their last runs in one query, their versions from the cache."""
    runs = await last_runs(session, (dag.dag_id for dag in dags), RUNS_SHOWN)
    structures = await versions.get_many(session, {dag.version_id for dag in dags})
    rows = []
    for dag in dags:
        options = structures[dag.version_id].options
        schedule = describe_schedule(
            dag.schedule, options.get("schedule_interval"), options.get("timezone", "UTC")
        )
        rows.append(
            DagRow(
                dag=dag,
                runs=runs.get(dag.dag_id, []),
                schedule=schedule,
                owner=options.get("owner") or NO_OWNER,
                params=len(options.get("params") or {}),
            )
        )
    return rows


async def _table_context(
    session: AsyncSession, versions: VersionCache, filters: DagFilters
) -> dict[str, Any]:
    dialect = session.get_bind().dialect.name
    page = Page(PAGE_SIZE, (filters.page - 1) * PAGE_SIZE)
    dags, total = await paginate(
        session, _filtered(filters, dialect), page,
        sort_keys={"dag_id": Dag.dag_id}, default="dag_id", tiebreak=Dag.dag_id,
    )  # fmt: skip
    errors = await session.scalars(
        select(ImportError_).order_by(ImportError_.fileloc).limit(IMPORT_ERRORS_SHOWN)
    )
    error_count = await session.scalar(select(func.count()).select_from(ImportError_))
    return {
        "rows": await dag_rows(session, versions, dags),
        "total": total,
        "filters": filters,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "first": page.offset + 1,
        "last": page.offset + len(dags),
        "import_errors": errors.all(),
        "import_error_count": error_count or 0,
    }


@router.get("/", response_class=HTMLResponse)
async def dags_page(
    request: Request, session: Session, service: Service, ui: UiViewer
) -> HTMLResponse:
    """The whole page; a filter or page change from the page itself gets only the live part
    (``#dags-live``), whose stream then reconnects with the new filters."""
    filters = DagFilters.from_query(request.query_params)
    context = await _table_context(session, service.versions, filters)
    if request.headers.get("HX-Target") == "dags-live":
        return render(request, "partials/dags_live.html", ui, **context)
    context["tags"] = await known_tags(session)
    context["run_states"] = RUN_STATES
    return render(request, "pages/dags.html", ui, **context)


@live_view("dags")
async def live_dags(
    request: Request, session: AsyncSession, ui: UiSession, query: Mapping[str, str]
) -> dict[str, str]:
    filters = DagFilters.from_query(query)
    context = await _table_context(session, service_of(request).versions, filters)
    context.update(request=request, ui=ui)
    return {
        "dag-table": templates.get_template("partials/dag_table.html").render(context),
        "import-errors": templates.get_template("partials/import_errors.html").render(context),
    }


async def _toggle(
    request: Request, session: AsyncSession, service: Service, ui: UiSession, dag_id: str,
    paused: bool,
) -> HTMLResponse:  # fmt: skip
    dag = await set_paused(
        session, service.versions, ui.principal, dag_id, paused, service.clock.now(),
        origin="dashboard",
    )  # fmt: skip
    (row,) = await dag_rows(session, service.versions, [dag])
    return render(request, "partials/dags_row.html", ui, row=row)


@router.post("/dags/{dag_id}/pause", response_class=HTMLResponse)
async def pause_dag(
    dag_id: DagIdPath, request: Request, session: Session, service: Service, ui: UiOperator
) -> HTMLResponse:
    """Pause; answers the DAG's refreshed row."""
    return await _toggle(request, session, service, ui, dag_id, paused=True)


@router.post("/dags/{dag_id}/unpause", response_class=HTMLResponse)
async def unpause_dag(
    dag_id: DagIdPath, request: Request, session: Session, service: Service, ui: UiOperator
) -> HTMLResponse:
    """Unpause; answers the DAG's refreshed row."""
    return await _toggle(request, session, service, ui, dag_id, paused=False)
