"""``/connections``: list, create, edit, delete and test connections, secrets never in the page.

Operators see the list (masked) and may test http(s) connections; admins change them, as in the
REST API, through the same use cases (``app.connections_service``). The browser never receives a
password or an extra value: the list and the edit form say "set" and offer an empty "replace"
field (left empty, the secret is kept) and an explicit "clear" checkbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import connections_service as use
from app.api.deps import Service, Session
from app.dashboard.live import live_view
from app.dashboard.pages.form_input import form_fields, ok_toast, validated
from app.dashboard.sessions import UiAdmin, UiOperator, UiSession
from app.dashboard.templating import render, templates
from app.db.models import Connection as ConnectionRow
from app.secrets import SecretBox
from weir.errors import InvalidRequest

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

ConnIdPath = Annotated[str, Path(min_length=1, max_length=250, pattern=use.CONN_ID_PATTERN)]
PAGE_SIZE = 50
_PLAIN_FIELDS = ("conn_type", "description", "host", "port", "login", "schema")


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """What a page may show of a connection: everything but the secrets, which are only named."""

    conn_id: str
    conn_type: str
    description: str | None
    host: str | None
    port: int | None
    login: str | None
    schema: str | None
    password_set: bool
    extra_keys: list[str]

    @property
    def is_testable(self) -> bool:
        return self.conn_type.lower() in use.TESTABLE_TYPES

    @classmethod
    def of(cls, row: ConnectionRow, secrets: SecretBox) -> ConnectionView:
        return cls(
            conn_id=row.conn_id, conn_type=row.conn_type, description=row.description,
            host=row.host, port=row.port, login=row.login, schema=row.schema,
            password_set=row.password_encrypted is not None,
            extra_keys=sorted(use.decrypt_extra(row, secrets)),
        )  # fmt: skip


def _offset(query: Mapping[str, str]) -> int:
    raw = query.get("offset", "0")
    return min(int(raw), 10_000_000) if raw.isascii() and raw.isdigit() else 0


async def _table(session: AsyncSession, secrets: SecretBox, offset: int) -> dict[str, Any]:
    total = await session.scalar(select(func.count()).select_from(ConnectionRow)) or 0
    rows = await session.scalars(
        select(ConnectionRow).order_by(ConnectionRow.conn_id).limit(PAGE_SIZE).offset(offset)
    )
    return {
        "connections": [ConnectionView.of(row, secrets) for row in rows],
        "total": total, "offset": offset, "page_size": PAGE_SIZE, "base_url": "/connections",
    }  # fmt: skip


def _table_html(request: Request, ui: UiSession, context: dict[str, Any]) -> str:
    template = templates.get_template("partials/conn_table.html")
    return template.render({"request": request, "ui": ui, **context})


@router.get("/connections", response_class=HTMLResponse)
async def connections_page(
    request: Request, session: Session, service: Service, ui: UiOperator
) -> HTMLResponse:
    context = await _table(session, service.secrets, _offset(request.query_params))
    return render(request, "pages/connections.html", ui, **context)


@live_view("connections")
async def live_connections(
    request: Request, session: AsyncSession, ui: UiSession, query: Mapping[str, str]
) -> dict[str, str]:
    if not ui.can("operator"):
        return {}
    secrets = request.app.state.weir.secrets
    return {"conn-table": _table_html(request, ui, await _table(session, secrets, _offset(query)))}


def _json_object(fields: Mapping[str, str], name: str) -> dict[str, Any]:
    try:
        value = json.loads(fields[name])
    except ValueError as error:
        raise InvalidRequest(f"{name}: not valid JSON ({error.__class__.__name__}).") from error
    if not isinstance(value, dict):
        raise InvalidRequest(f'{name}: give a JSON object, like {{"sslmode": "require"}}.')
    return value


def _created_body(fields: Mapping[str, str]) -> use.ConnectionCreate:
    data: dict[str, Any] = {k: fields[k] for k in ("conn_id", *_PLAIN_FIELDS) if k in fields}
    data.setdefault("conn_id", "")
    data.setdefault("conn_type", "")
    if "password" in fields:
        data["password"] = fields["password"]
    if "extra" in fields:
        data["extra"] = _json_object(fields, "extra")
    return validated(use.ConnectionCreate, data)


def _patch_body(fields: Mapping[str, str]) -> use.ConnectionPatch:
    """Plain fields as shown (blank clears them); secrets only when replaced or cleared."""
    data: dict[str, Any] = {name: fields.get(name) for name in _PLAIN_FIELDS}
    data["conn_type"] = fields.get("conn_type", "")
    if "password_clear" in fields:
        data["password"] = None
    elif "password_new" in fields:
        data["password"] = fields["password_new"]
    if "extra_clear" in fields:
        data["extra"] = None
    elif "extra_new" in fields:
        data["extra"] = _json_object(fields, "extra_new")
    return validated(use.ConnectionPatch, data)


@router.post("/connections", response_class=HTMLResponse)
async def create_connection(
    request: Request, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    """Create from the "add" form; answers the refreshed table and an ok toast."""
    body = _created_body(await form_fields(request))
    await use.create_connection(session, service, ui.principal, body, origin="dashboard")
    context = await _table(session, service.secrets, 0)
    html = _table_html(request, ui, context) + ok_toast(f"Connection {body.conn_id} created")
    return HTMLResponse(html, headers={"HX-Trigger": "conn-created"})


@router.get("/connections/{conn_id}", response_class=HTMLResponse)
async def edit_page(
    request: Request, conn_id: ConnIdPath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    row = await use.get_connection_row(session, conn_id)
    view = ConnectionView.of(row, service.secrets)
    return render(request, "pages/connection_edit.html", ui, connection=view)


@router.post("/connections/{conn_id}")
async def update_connection(
    request: Request, conn_id: ConnIdPath, session: Session, service: Service, ui: UiAdmin
) -> Response:
    """Save the edit form, then back to the list."""
    body = _patch_body(await form_fields(request))
    await use.update_connection(session, service, ui.principal, conn_id, body, origin="dashboard")
    return Response(status_code=200, headers={"HX-Redirect": "/connections"})


@router.delete("/connections/{conn_id}", response_class=HTMLResponse)
async def delete_connection(
    request: Request, conn_id: ConnIdPath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    await use.delete_connection(session, service, ui.principal, conn_id, origin="dashboard")
    context = await _table(session, service.secrets, 0)
    return HTMLResponse(_table_html(request, ui, context) + ok_toast(f"{conn_id} deleted"))


@router.post("/connections/{conn_id}/test", response_class=HTMLResponse)
async def test_connection(
    request: Request, conn_id: ConnIdPath, service: Service, ui: UiOperator
) -> HTMLResponse:
    """Call an http(s) connection from the server; the result shows next to the button."""
    result, seconds = await use.test_connection(service, ui.principal, conn_id, origin="dashboard")
    return render(request, "partials/conn_test.html", ui, result=result, seconds=seconds)
