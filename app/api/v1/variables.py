"""``/api/v1/variables``: named settings tasks read with ``weir.resources.get_variable``.

Same roles as connections: operators read, admins write. Every value is Fernet-encrypted at rest;
a secret variable's value is never returned (``***``), a plain one is shown. A variable whose key
looks secret (``password``, ``token``, ``api_key``, … — Airflow's heuristic) is secret unless the
request says otherwise. The use cases live in ``app.variables_service``, shared with the dashboard.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from app import variables_service as use
from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Admin, Operator
from app.db.models import Variable
from app.secrets import SecretBox
from app.variables_service import (
    KEY_PATTERN,
    NO_NUL,
    VariableWrite,
    get_variable_row,
    masked_value,
    reveal_variable,
)
from weir.resources import MASK

__all__ = [
    "KeyPath",
    "VariablePublic",
    "VariableWrite",
    "VariablesPublic",
    "get_variable_row",
    "reveal_variable",
    "router",
]

router = APIRouter(prefix="/api/v1/variables", tags=["variables"], responses=PROBLEM_RESPONSES)

KeyPath = Annotated[
    str,
    Path(min_length=1, max_length=250, pattern=KEY_PATTERN, description="Letters, digits, _ . -"),
]


class VariablePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"key": "region", "value": "eu-west-1", "description": None, "is_secret": False},
                {"key": "api_token", "value": MASK, "description": None, "is_secret": True},
            ]
        }
    )

    key: str
    value: str = Field(description=f"The value, or {MASK} for a secret variable.")
    description: str | None
    is_secret: bool

    @classmethod
    def of(cls, row: Variable, secrets: SecretBox) -> VariablePublic:
        return cls(
            key=row.key,
            value=masked_value(row, secrets),
            description=row.description,
            is_secret=row.is_secret,
        )


class VariablesPublic(BaseModel):
    variables: list[VariablePublic]
    total: int


SORT_KEYS = {"key": Variable.key}


@router.get("", operation_id="variables-list")
async def list_variables(
    session: Session,
    service: Service,
    _operator: Operator,
    search: Annotated[
        str | None, Query(max_length=250, pattern=NO_NUL, description="Part of the key.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> VariablesPublic:
    """List variables; secret values are masked."""
    statement = select(Variable)
    if search:
        statement = statement.where(
            func.lower(Variable.key).contains(search.lower(), autoescape=True)
        )
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="key", tiebreak=Variable.key,
    )  # fmt: skip
    return VariablesPublic(
        variables=[VariablePublic.of(row, service.secrets) for row in rows], total=total
    )


@router.get("/{key}", operation_id="variables-get")
async def read_variable(
    key: KeyPath, session: Session, service: Service, _operator: Operator
) -> VariablePublic:
    """One variable; a secret one's value is masked."""
    return VariablePublic.of(await get_variable_row(session, key), service.secrets)


@router.put("/{key}", operation_id="variables-set", responses={409: PROBLEM_RESPONSES[409]})
async def set_variable(
    key: KeyPath, body: VariableWrite, session: Session, service: Service, admin: Admin
) -> VariablePublic:
    """Create the variable or replace its value, description and secrecy."""
    row = await use.set_variable(session, service, admin, key, body)
    return VariablePublic.of(row, service.secrets)


@router.delete("/{key}", operation_id="variables-delete", status_code=204)
async def delete_variable(
    key: KeyPath, session: Session, service: Service, admin: Admin
) -> Response:
    """Delete a variable; tasks that ask for it from now on get their default."""
    await use.delete_variable(session, service, admin, key)
    return Response(status_code=204)
