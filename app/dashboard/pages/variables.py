"""``/variables``: list, create, edit and delete variables; secret values never in the page.

Operators see the list (secret values as ``***``); admins change it through the same use cases
as the REST API (``app.variables_service``). Editing a secret variable shows an empty "replace"
field: left empty, the stored value is kept without ever reaching the browser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import variables_service as use
from app.api.deps import Service, Session
from app.dashboard.live import live_view
from app.dashboard.pages.form_input import form_fields, ok_toast, validated
from app.dashboard.sessions import UiAdmin, UiOperator, UiSession
from app.dashboard.templating import render, templates
from app.db.models import Variable
from app.secrets import SecretBox
from weir.errors import Conflict, InvalidRequest

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

KeyPath = Annotated[str, Path(min_length=1, max_length=250, pattern=use.KEY_PATTERN)]
PAGE_SIZE = 50
SHOWN_CHARS = 200
_SECRECY = {"auto": None, "yes": True, "no": False}


@dataclass(frozen=True, slots=True)
class VariableView:
    """A variable as a page shows it: a secret one's value is ``***``."""

    key: str
    value: str
    description: str | None
    is_secret: bool

    @classmethod
    def of(cls, row: Variable, secrets: SecretBox) -> VariableView:
        value = use.masked_value(row, secrets)
        return cls(key=row.key, value=value, description=row.description, is_secret=row.is_secret)


def _offset(query: Mapping[str, str]) -> int:
    raw = query.get("offset", "0")
    return min(int(raw), 10_000_000) if raw.isascii() and raw.isdigit() else 0


async def _table(session: AsyncSession, secrets: SecretBox, offset: int) -> dict[str, Any]:
    total = await session.scalar(select(func.count()).select_from(Variable)) or 0
    rows = await session.scalars(
        select(Variable).order_by(Variable.key).limit(PAGE_SIZE).offset(offset)
    )
    return {
        "variables": [VariableView.of(row, secrets) for row in rows], "shown_chars": SHOWN_CHARS,
        "total": total, "offset": offset, "page_size": PAGE_SIZE, "base_url": "/variables",
    }  # fmt: skip


def _table_html(request: Request, ui: UiSession, context: dict[str, Any]) -> str:
    template = templates.get_template("partials/var_table.html")
    return template.render({"request": request, "ui": ui, **context})


@router.get("/variables", response_class=HTMLResponse)
async def variables_page(
    request: Request, session: Session, service: Service, ui: UiOperator
) -> HTMLResponse:
    context = await _table(session, service.secrets, _offset(request.query_params))
    return render(request, "pages/variables.html", ui, **context)


@live_view("variables")
async def live_variables(
    request: Request, session: AsyncSession, ui: UiSession, query: Mapping[str, str]
) -> dict[str, str]:
    if not ui.can("operator"):
        return {}
    secrets = request.app.state.weir.secrets
    return {"var-table": _table_html(request, ui, await _table(session, secrets, _offset(query)))}


def _body(fields: Mapping[str, str], *, value_required: bool) -> use.VariableWrite:
    secrecy = fields.get("is_secret", "auto")
    if secrecy not in _SECRECY:
        raise InvalidRequest("is_secret: choose auto, yes or no.")
    if value_required and "value" not in fields:
        raise InvalidRequest("value: give the variable a value.")
    data = {"value": fields.get("value", ""), "description": fields.get("description"),
            "is_secret": _SECRECY[secrecy]}  # fmt: skip
    return validated(use.VariableWrite, data)


class _NewKey(BaseModel):
    key: use.VariableKey


def _key(fields: Mapping[str, str]) -> str:
    return validated(_NewKey, {"key": fields.get("key", "")}).key


@router.post("/variables", response_class=HTMLResponse)
async def create_variable(
    request: Request, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    """The "add" form: a new key only (editing is explicit, so nothing is overwritten)."""
    fields = await form_fields(request)
    key, body = _key(fields), _body(fields, value_required=False)
    if await session.get(Variable, key) is not None:
        raise Conflict(f"Variable {key!r} exists already; use its Edit button to change it.")
    await use.set_variable(session, service, ui.principal, key, body, origin="dashboard")
    context = await _table(session, service.secrets, 0)
    return HTMLResponse(_table_html(request, ui, context) + ok_toast(f"Variable {key} set"))


@router.get("/variables/{key}", response_class=HTMLResponse)
async def edit_page(
    request: Request, key: KeyPath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    view = VariableView.of(await use.get_variable_row(session, key), service.secrets)
    return render(request, "pages/variable_edit.html", ui, variable=view)


@router.post("/variables/{key}")
async def update_variable(
    request: Request, key: KeyPath, session: Session, service: Service, ui: UiAdmin
) -> Response:
    """Save the edit form; a secret variable's empty value field keeps the stored value."""
    row = await use.get_variable_row(session, key)
    fields = await form_fields(request)
    keep = row.is_secret and "value" not in fields
    body = _body(fields, value_required=False)
    await use.set_variable(
        session, service, ui.principal, key, body, keep_value=keep, origin="dashboard"
    )
    return Response(status_code=200, headers={"HX-Redirect": "/variables"})


@router.delete("/variables/{key}", response_class=HTMLResponse)
async def delete_variable(
    request: Request, key: KeyPath, session: Session, service: Service, ui: UiAdmin
) -> HTMLResponse:
    await use.delete_variable(session, service, ui.principal, key, origin="dashboard")
    context = await _table(session, service.secrets, 0)
    return HTMLResponse(_table_html(request, ui, context) + ok_toast(f"{key} deleted"))
