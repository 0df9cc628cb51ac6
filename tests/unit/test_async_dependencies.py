"""Every dependency of every route is a coroutine: FastAPI runs a plain ``def`` dependency in a
thread pool, so one such dependency costs every request that uses it a thread hand-off (it was
``get_service``, used by every route: a thread hop on each execution-API call)."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from app.db.engine import create_database
from app.main import create_app
from weir.broker.memory import MemoryBroker
from weir.config import Settings


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for child in dependant.dependencies:
        yield child
        yield from _dependants(child)


def _is_async(call: Any) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_route_has_a_dependency_that_runs_in_a_thread_pool() -> None:
    settings = Settings(
        _env_file=None,
        database_url="sqlite+aiosqlite:///:memory:",
        broker_url="memory://",
        secret_key=secrets.token_urlsafe(32),
    )
    app = create_app(
        settings, create_database(settings.database_url), MemoryBroker(), run_service_loops=False
    )
    routes = [
        route
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
    ]
    assert len(routes) > 100, "the routes were not all found"
    offenders = sorted(
        {
            f"{getattr(d.call, '__qualname__', d.call)} (in {route.path_format})"
            for route in routes
            for d in _dependants(route.dependant)
            if d.call is not None and not _is_async(d.call)
        }
    )
    assert not offenders, "sync dependencies (make them async def):\n  " + "\n  ".join(offenders)
