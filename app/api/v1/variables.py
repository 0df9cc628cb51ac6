"""``/api/v1/variables``: named settings tasks read with ``weir.resources.get_variable``.

Same roles as connections: operators read, admins write. Every value is Fernet-encrypted at rest;
a secret variable's value is never returned (``***``), a plain one is shown. A variable whose key
looks secret (``password``, ``token``, ``api_key``, … — Airflow's heuristic) is secret unless the
request says otherwise.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.audit import record
from app.auth import Admin, Operator
from app.db.models import Variable
from app.secrets import SecretBox
from weir.errors import Conflict, NotFound
from weir.resources import MASK, VariableValue, is_secret_name

__all__ = [
    "VariablePublic",
    "VariableWrite",
    "VariablesPublic",
    "get_variable_row",
    "reveal_variable",
    "router",
]

router = APIRouter(prefix="/api/v1/variables", tags=["variables"], responses=PROBLEM_RESPONSES)

NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text
KEY_PATTERN = r"^[A-Za-z0-9_.\-]+$"
KeyPath = Annotated[
    str,
    Path(min_length=1, max_length=250, pattern=KEY_PATTERN, description="Letters, digits, _ . -"),
]
MAX_VALUE_CHARS = 1_000_000


class VariableWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"value": "eu-west-1", "description": "Where the exports go"},
                {"value": '{"retries": 3}'},
                {"value": "tok-123", "is_secret": True},
            ]
        },
    )

    value: str = Field(
        max_length=MAX_VALUE_CHARS,
        description="A string; JSON text if tasks read it with deserialize_json=True.",
    )
    description: str | None = Field(default=None, max_length=5000, pattern=NO_NUL)
    is_secret: bool | None = Field(
        default=None, description="Omit to decide by the key: secret if it looks like one."
    )


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
        value = MASK if row.is_secret else secrets.decrypt(row.value_encrypted)
        return cls(key=row.key, value=value, description=row.description, is_secret=row.is_secret)


class VariablesPublic(BaseModel):
    variables: list[VariablePublic]
    total: int


SORT_KEYS = {"key": Variable.key}


def reveal_variable(row: Variable, secrets: SecretBox) -> VariableValue:
    """The value in clear, for the task of a running attempt only."""
    return VariableValue(
        key=row.key, value=secrets.decrypt(row.value_encrypted), is_secret=row.is_secret
    )


async def get_variable_row(session: AsyncSession, key: str) -> Variable:
    row = await session.get(Variable, key)
    if row is None:
        raise NotFound(f"Variable {key!r} does not exist; PUT /api/v1/variables/{key} sets it.")
    return row


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
    is_secret = is_secret_name(key) if body.is_secret is None else body.is_secret
    row = await session.get(Variable, key)
    created = row is None
    if row is None:
        row = Variable(key=key)
        session.add(row)
    row.value_encrypted = service.secrets.encrypt(body.value)
    row.description, row.is_secret = body.description, is_secret
    try:
        await session.flush()
    except IntegrityError as error:  # created by a concurrent request since we looked
        raise Conflict(f"Variable {key!r} was created concurrently; send the PUT again.") from error
    await record(session, admin, "variable.set", key, service.clock.now(),
                 detail={"created": created, "is_secret": is_secret})  # fmt: skip
    return VariablePublic.of(row, service.secrets)


@router.delete("/{key}", operation_id="variables-delete", status_code=204)
async def delete_variable(
    key: KeyPath, session: Session, service: Service, admin: Admin
) -> Response:
    """Delete a variable; tasks that ask for it from now on get their default."""
    await session.delete(await get_variable_row(session, key))
    await record(session, admin, "variable.delete", key, service.clock.now())
    return Response(status_code=204)
