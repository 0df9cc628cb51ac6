"""RFC 9457 problem details: the one place where errors become HTTP answers.

Domain code raises ``weir.errors`` exceptions; these handlers turn them, FastAPI's validation errors
and Starlette's HTTP errors into ``application/problem+json`` bodies. A database outage
(``app.db.outage``) is a 503 with ``Retry-After``, never a 500 with a traceback per request.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from app.db.outage import DatabaseUnavailable
from weir.errors import Conflict, InvalidRequest, NotFound, WeirError

__all__ = ["PROBLEM_RESPONSES", "Problem", "install_problem_handlers", "problem_response"]

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a 503: outages are usually seconds (a failover, a restart)."""


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For validation errors: each field at fault and why."
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {MEDIA_TYPE: {}}}
    for code in (400, 401, 403, 404, 409, 413, 422)
}
PROBLEM_RESPONSES[503] = {
    "model": Problem,
    "content": {MEDIA_TYPE: {}},
    "description": "The database is unavailable; try again after `Retry-After` seconds.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
}

_STATUS_BY_ERROR: list[tuple[type[WeirError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidRequest, 422),
]


def _answer(
    request: Request,
    status: int,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    """problem+json for the APIs; an HTML page or toast for the dashboard."""
    from app.dashboard.errors import dashboard_error, is_dashboard_request

    if is_dashboard_request(request):
        return dashboard_error(request, status, detail)
    return problem_response(status, detail, errors=errors)


def problem_response(
    status: int, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None
) -> JSONResponse:
    problem = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, errors=errors)
    return JSONResponse(
        problem.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE
    )


async def _weir_error(request: Request, error: Exception) -> Response:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            fields = error.errors if isinstance(error, InvalidRequest) else None
            return _answer(request, status, str(error), errors=fields)
    return _answer(request, 400, str(error))


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
    ]
    detail = "The request is not valid; see errors."
    if fields and not request.url.path.startswith("/api/"):
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return _answer(request, 422, detail, errors=fields)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    response = _answer(request, error.status_code, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _data_error(request: Request, error: Exception) -> Response:
    """The database refused a value (SQLSTATE class 22: NUL in text, out of range, too long).

    Models validate what they can; this is the safety net, so such input is still the client's
    error (422) and never a 500. The transaction has already been rolled back.
    """
    assert isinstance(error, DataError)
    reason = str(error.orig).splitlines()[0] if error.orig is not None else "invalid value"
    return _answer(request, 422, f"A value was refused by the database: {reason}")


async def _database_unavailable(request: Request, error: Exception) -> Response:
    """The database is down or out of connections: the server's trouble, and a passing one.

    The outage itself is logged once by ``app.db.outage``, not once per request here.
    """
    if isinstance(error, PoolTimeout):
        request.app.state.weir.database.outage.failed(error)
        detail = "No database connection came free in time; try again shortly."
    else:
        detail = "The database is unavailable; try again shortly."
    response = _answer(request, 503, detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WeirError, _weir_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
