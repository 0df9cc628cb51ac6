"""``/api/v1/connections``: credentials for external systems.

Connections are credentials, so operators (who run and test things) read them, masked, and test
them; only admins create, change or delete them. Password and extra are Fernet-encrypted at rest
and never returned in clear: answers say ``password_set`` and show each extra key with ``***``.
The use cases (validation, encryption, audit) live in ``app.connections_service``, shared with
the dashboard; the clear values reach only a running task, through the execution API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select

from app import connections_service as use
from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Admin, Operator
from app.connections_service import (
    CONN_ID_PATTERN,
    EXAMPLE,
    NO_NUL,
    ConnectionCreate,
    ConnectionPatch,
    ConnectionTestResult,
    decrypt_extra,
    get_connection_row,
    reveal_connection,
)
from app.db.models import Connection as ConnectionRow
from app.secrets import SecretBox
from weir.resources import MASK

__all__ = [
    "ConnIdPath",
    "ConnectionCreate",
    "ConnectionPatch",
    "ConnectionPublic",
    "ConnectionTestResult",
    "ConnectionsPublic",
    "get_connection_row",
    "reveal_connection",
    "router",
]

router = APIRouter(prefix="/api/v1/connections", tags=["connections"], responses=PROBLEM_RESPONSES)

ConnIdPath = Annotated[str, Path(min_length=1, max_length=250, pattern=CONN_ID_PATTERN)]


class ConnectionPublic(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        serialize_by_alias=True,
        json_schema_extra={
            "examples": [
                {**EXAMPLE, "password": None, "password_set": True, "extra": {"sslmode": MASK},
                 "description": None}
            ]
        },
    )  # fmt: skip

    conn_id: str
    conn_type: str
    description: str | None
    host: str | None
    port: int | None
    login: str | None
    schema_: str | None = Field(alias="schema")
    password_set: bool = Field(description="Whether a password is stored (it is never shown).")
    extra: dict[str, str] = Field(description=f"The stored extra's keys; every value is {MASK}.")

    @classmethod
    def of(cls, row: ConnectionRow, secrets: SecretBox) -> ConnectionPublic:
        extra = decrypt_extra(row, secrets)
        return cls(
            conn_id=row.conn_id, conn_type=row.conn_type, description=row.description,
            host=row.host, port=row.port, login=row.login, schema_=row.schema,
            password_set=row.password_encrypted is not None,
            extra=dict.fromkeys(extra, MASK),
        )  # fmt: skip


class ConnectionsPublic(BaseModel):
    connections: list[ConnectionPublic]
    total: int


SORT_KEYS = {"conn_id": ConnectionRow.conn_id, "conn_type": ConnectionRow.conn_type,
             "host": ConnectionRow.host}  # fmt: skip


@router.get("", operation_id="connections-list")
async def list_connections(
    session: Session,
    service: Service,
    _operator: Operator,
    conn_type: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    search: Annotated[
        str | None,
        Query(max_length=250, pattern=NO_NUL, description="Part of the id, host or description."),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> ConnectionsPublic:
    """List connections, passwords and extra values masked."""
    statement = select(ConnectionRow)
    if conn_type is not None:
        statement = statement.where(ConnectionRow.conn_type == conn_type)
    if search:
        needle = search.lower()
        statement = statement.where(
            or_(*(func.lower(column).contains(needle, autoescape=True) for column in
                  (ConnectionRow.conn_id, ConnectionRow.host, ConnectionRow.description)))
        )  # fmt: skip
    rows, total = await paginate(
        session, statement, Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="conn_id", tiebreak=ConnectionRow.conn_id,
    )  # fmt: skip
    return ConnectionsPublic(
        connections=[ConnectionPublic.of(row, service.secrets) for row in rows], total=total
    )


@router.post("", operation_id="connections-create", status_code=201,
             responses={409: PROBLEM_RESPONSES[409]})  # fmt: skip
async def create_connection(
    body: ConnectionCreate, session: Session, service: Service, admin: Admin
) -> ConnectionPublic:
    """Create a connection; 409 if its id is taken."""
    row = await use.create_connection(session, service, admin, body)
    return ConnectionPublic.of(row, service.secrets)


@router.get("/{conn_id}", operation_id="connections-get")
async def read_connection(
    conn_id: ConnIdPath, session: Session, service: Service, _operator: Operator
) -> ConnectionPublic:
    """One connection, password and extra values masked."""
    return ConnectionPublic.of(await get_connection_row(session, conn_id), service.secrets)


@router.patch("/{conn_id}", operation_id="connections-update")
async def update_connection(
    conn_id: ConnIdPath, body: ConnectionPatch, session: Session, service: Service, admin: Admin
) -> ConnectionPublic:
    """Change the fields the body names; the others, the password included, are kept."""
    row = await use.update_connection(session, service, admin, conn_id, body)
    return ConnectionPublic.of(row, service.secrets)


@router.delete("/{conn_id}", operation_id="connections-delete", status_code=204)
async def delete_connection(
    conn_id: ConnIdPath, session: Session, service: Service, admin: Admin
) -> Response:
    """Delete a connection; tasks that ask for it from now on fail with "does not exist"."""
    await use.delete_connection(session, service, admin, conn_id)
    return Response(status_code=204)


@router.post("/{conn_id}/test", operation_id="connections-test",
             responses={422: PROBLEM_RESPONSES[422]})  # fmt: skip
async def test_connection(
    conn_id: ConnIdPath, service: Service, operator: Operator
) -> ConnectionTestResult:
    """GET an http or https connection's URL (with its login, if any) and say how it answered.

    The call is made from the API server, within a few seconds, without following redirects.
    """
    result, _seconds = await use.test_connection(service, operator, conn_id)
    return result
