"""What the service's hot path costs, counted for Prometheus and served at ``/metrics``.

Counters, per process, by who caused the work (``component``):

- ``weir_db_statements_total``: SQL statements SQLAlchemy sent (one cursor execution each);
- ``weir_db_transactions_total``: transactions that ran at least one statement, ended by a commit
  or a rollback (an empty one sends nothing to the database, so it is not counted);
- ``weir_db_checkouts_total``: connections taken from the pool (on PostgreSQL each is pre-pinged);
- ``weir_http_requests_total{surface}``: requests, by ``execution``, ``api``, ``dashboard`` or
  ``other`` (health probes, ``/metrics``, the OpenAPI document and its pages).

``component`` is the surface of the HTTP request in flight, else the service loop running (named
after its asyncio task in ``app.services``; a loop renamed there is counted under ``other``), else
``other``. Both label sets are closed lists, so a scan of random URLs adds no series.

What the database counters cannot see, on PostgreSQL through asyncpg: a statement is at least one
round trip, plus one to prepare it when it is not in asyncpg's statement cache; a transaction adds
its ``BEGIN`` and its ``COMMIT``/``ROLLBACK``; a check-out's pre-ping is ``BEGIN``, ``;`` and
``ROLLBACK``. See docs/decisions/hot-path-budget.md.

The registry is Weir's own (``REGISTRY``), not prometheus_client's global one, and the counters are
made once, at import: apps created side by side in one process (tests, replicas) share them, and
``/metrics`` shows the process's totals. ``/metrics`` needs no token: it holds only counters.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "COMPONENTS",
    "LOOP_COMPONENTS",
    "REGISTRY",
    "SURFACES",
    "CountRequests",
    "install_database_metrics",
    "install_metrics",
    "surface_of",
]

SURFACES = ("execution", "api", "dashboard", "other")
LOOP_COMPONENTS = {
    "scheduler": "scheduler",
    "outbox-relay": "relay",
    "dag-processor": "dag_processor",
    "retention": "retention",
    "failure-notifier": "notifier",
}
"""asyncio task names of the service loops (``app.services``) → their component."""
COMPONENTS = (*SURFACES, *LOOP_COMPONENTS.values())

_OTHER_PREFIXES = ("/health/", "/metrics", "/openapi.json", "/docs", "/redoc")
_TRANSACTION_OF = "weir.metrics.transaction_of"
"""Key in a connection's ``info``: the component of the open transaction's first statement, which
its later statements and its end are counted under. They may run elsewhere: SQLAlchemy ends a
session leaving ``async with`` in a task of its own (a ``before_commit`` hook's NOTIFY included)."""

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU seconds and resident memory of this process

_statements = Counter(
    "weir_db_statements", "SQL statements sent.", ["component"], registry=REGISTRY
)
_transactions = Counter(
    "weir_db_transactions",
    "Transactions that ran a statement, committed or rolled back.",
    ["component"],
    registry=REGISTRY,
)
_checkouts = Counter(
    "weir_db_checkouts", "Connections taken from the pool.", ["component"], registry=REGISTRY
)
_requests = Counter("weir_http_requests", "HTTP requests received.", ["surface"], registry=REGISTRY)
# Bound once: no label lookup per statement, and every series is there (at 0) from the start.
_STATEMENTS = {name: _statements.labels(name) for name in COMPONENTS}
_TRANSACTIONS = {name: _transactions.labels(name) for name in COMPONENTS}
_CHECKOUTS = {name: _checkouts.labels(name) for name in COMPONENTS}
_REQUESTS = {name: _requests.labels(name) for name in SURFACES}

_surface: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "weir_http_surface", default=None
)
"""The surface of the HTTP request this code serves, if any (SQLAlchemy's greenlets share the
context of the task that awaits them, so the engine's events see it)."""


def surface_of(path: str) -> str:
    """The surface a request path belongs to; the dashboard answers every path no other claims."""
    if path.startswith("/execution/"):
        return "execution"
    if path.startswith("/api/"):
        return "api"
    if path.startswith(_OTHER_PREFIXES):
        return "other"
    return "dashboard"


def _component() -> str:
    surface = _surface.get()
    if surface is not None:
        return surface
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop: a synchronous caller
        return "other"
    return LOOP_COMPONENTS.get(task.get_name(), "other") if task is not None else "other"


class CountRequests:
    """Pure ASGI: counts each HTTP request by surface, and names that surface to the statements
    the request causes. Added last, so it sees every request, refused ones included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        surface = surface_of(scope["path"])
        _REQUESTS[surface].inc()
        token = _surface.set(surface)
        try:
            await self.app(scope, receive, send)
        finally:
            _surface.reset(token)


async def serve_metrics(_request: Request) -> Response:
    """The counters in Prometheus' text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    """``/metrics`` (out of the OpenAPI document) and the request counter; call it after every
    other ``add_middleware``, so that the counter runs first."""
    app.add_api_route("/metrics", serve_metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(CountRequests)


def install_database_metrics(engine: AsyncEngine) -> None:
    """Count the statements, transactions and check-outs of ``engine``."""
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", _count_statement)
    event.listen(sync_engine, "commit", _count_transaction)
    event.listen(sync_engine, "rollback", _count_transaction)
    event.listen(sync_engine, "checkout", _count_checkout)


def _count_statement(connection: Connection, *_: Any) -> None:
    component = connection.info.get(_TRANSACTION_OF) or _component()
    connection.info[_TRANSACTION_OF] = component
    _STATEMENTS[component].inc()


def _count_transaction(connection: Connection) -> None:
    """Counted at commit or rollback. A connection that died mid-transaction is rolled back
    while invalid: reading its ``info`` then raises ``PendingRollbackError``, which would turn
    an outage's 503 into a 500, so such a rollback is not counted (it sent nothing)."""
    if connection.invalidated:
        return
    component = connection.info.pop(_TRANSACTION_OF, None)
    if component is not None:  # None: no statement, so no BEGIN was sent either
        _TRANSACTIONS[component].inc()


def _count_checkout(*_: Any) -> None:
    _CHECKOUTS[_component()].inc()
