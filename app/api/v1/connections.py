"""``/api/v1/connections``: credentials for external systems.

Connections are credentials, so operators (who run and test things) read them, masked, and test
them; only admins create, change or delete them. Password and extra are Fernet-encrypted at rest
and never returned in clear: answers say ``password_set`` and show each extra key with ``***``.
The clear values reach only a running task, through the execution API (``reveal_connection``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.audit import record
from app.auth import Admin, Operator
from app.db.models import Connection as ConnectionRow
from app.secrets import SecretBox
from weir.errors import Conflict, InvalidRequest, NotFound
from weir.resources import MASK, Connection

__all__ = [
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

NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text
CONN_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
ConnId = Annotated[
    str,
    Field(min_length=1, max_length=250, pattern=CONN_ID_PATTERN,
          description="Letters, digits and _ . -", examples=["warehouse"]),
]  # fmt: skip
ConnIdPath = Annotated[str, Path(min_length=1, max_length=250, pattern=CONN_ID_PATTERN)]
ConnType = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.+\-]+$", examples=["postgres"])
]
ShortText = Annotated[str, Field(max_length=500, pattern=NO_NUL)]
Description = Annotated[str, Field(max_length=5000, pattern=NO_NUL)]
Port = Annotated[int, Field(ge=0, le=65535)]
Password = Annotated[str, Field(max_length=10_000, description="Stored encrypted; never shown.")]
MAX_EXTRA_CHARS = 65_536
EXAMPLE: dict[str, Any] = {
    "conn_id": "warehouse", "conn_type": "postgres", "host": "db.example.com", "port": 5432,
    "login": "etl", "schema": "analytics", "password": "s3cret", "extra": {"sslmode": "require"},
}  # fmt: skip


class _ConnectionFields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    description: Description | None = None
    host: ShortText | None = None
    port: Port | None = None
    login: ShortText | None = None
    schema_: ShortText | None = Field(default=None, alias="schema")
    password: Password | None = None
    extra: dict[str, Any] | None = Field(
        default=None, description="A JSON object; stored encrypted, its values never shown."
    )

    @field_validator("extra")
    @classmethod
    def _bounded_extra(cls, extra: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            size = len(json.dumps(extra))
        except (RecursionError, ValueError) as error:
            raise ValueError("extra cannot be stored as JSON") from error
        if size > MAX_EXTRA_CHARS:
            raise ValueError(f"extra must serialize to at most {MAX_EXTRA_CHARS} characters")
        return extra


class ConnectionCreate(_ConnectionFields):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    conn_id: ConnId
    conn_type: ConnType


class ConnectionPatch(_ConnectionFields):
    """Omitted fields are kept; ``"password": null`` clears the password, ``"extra": null`` the
    extra."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"password": "n3w-s3cret"}, {"host": "db2.example.com"}]}
    )

    conn_type: ConnType | None = None


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
        extra = _decrypt_extra(row, secrets)
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


def _decrypt_extra(row: ConnectionRow, secrets: SecretBox) -> dict[str, Any]:
    if row.extra_encrypted is None:
        return {}
    extra: dict[str, Any] = json.loads(secrets.decrypt(row.extra_encrypted))
    return extra


def reveal_connection(row: ConnectionRow, secrets: SecretBox) -> Connection:
    """The connection in clear, for the task of a running attempt only."""
    password = row.password_encrypted
    return Connection(
        conn_id=row.conn_id, conn_type=row.conn_type, host=row.host, port=row.port,
        login=row.login, schema=row.schema, description=row.description,
        password=secrets.decrypt(password) if password is not None else None,
        extra=_decrypt_extra(row, secrets),
    )  # fmt: skip


async def get_connection_row(session: AsyncSession, conn_id: str) -> ConnectionRow:
    row = await session.get(ConnectionRow, conn_id)
    if row is None:
        raise NotFound(
            f"Connection {conn_id!r} does not exist; GET /api/v1/connections lists them."
        )
    return row


def _apply(row: ConnectionRow, body: _ConnectionFields, secrets: SecretBox) -> list[str]:
    """Copy the fields the body sets onto the row (secrets encrypted); the names changed."""
    changed = sorted(body.model_fields_set)
    for name in changed:
        value = getattr(body, name)
        if name == "password":
            row.password_encrypted = secrets.encrypt(value) if value is not None else None
        elif name == "extra":
            row.extra_encrypted = secrets.encrypt(json.dumps(value)) if value else None
        elif name == "schema_":
            row.schema = value
        elif name != "conn_id":
            setattr(row, name, value)
    return [name.rstrip("_") for name in changed]


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
    if await session.get(ConnectionRow, body.conn_id) is not None:
        raise Conflict(
            f"Connection {body.conn_id!r} exists already; PATCH /api/v1/connections/"
            f"{body.conn_id} changes it."
        )
    row = ConnectionRow(conn_id=body.conn_id, conn_type=body.conn_type)
    fields = _apply(row, body, service.secrets)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as error:  # created by a concurrent request since we looked
        raise Conflict(f"Connection {body.conn_id!r} was created concurrently.") from error
    await record(session, admin, "connection.create", row.conn_id, service.clock.now(),
                 detail={"conn_type": row.conn_type, "fields": fields})  # fmt: skip
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
    row = await get_connection_row(session, conn_id)
    if "conn_type" in body.model_fields_set and body.conn_type is None:
        raise InvalidRequest(
            "A connection always has a type; send a new conn_type or omit it.",
            errors=[{"field": "body.conn_type", "message": "cannot be null"}],
        )
    fields = _apply(row, body, service.secrets)
    await session.flush()
    await record(session, admin, "connection.update", conn_id, service.clock.now(),
                 detail={"fields": fields})  # fmt: skip
    return ConnectionPublic.of(row, service.secrets)


@router.delete("/{conn_id}", operation_id="connections-delete", status_code=204)
async def delete_connection(
    conn_id: ConnIdPath, session: Session, service: Service, admin: Admin
) -> Response:
    """Delete a connection; tasks that ask for it from now on fail with "does not exist"."""
    await session.delete(await get_connection_row(session, conn_id))
    await record(session, admin, "connection.delete", conn_id, service.clock.now())
    return Response(status_code=204)


class ConnectionTestResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ok": True, "status": 200, "detail": "200 OK"}]}
    )

    ok: bool = Field(description="Whether the target answered with a status below 400.")
    status: int | None = Field(description="The HTTP status it answered, if it answered.")
    detail: str


TESTABLE_TYPES = ("http", "https")
TEST_TIMEOUT = 5.0


@router.post("/{conn_id}/test", operation_id="connections-test",
             responses={422: PROBLEM_RESPONSES[422]})  # fmt: skip
async def test_connection(
    conn_id: ConnIdPath, service: Service, operator: Operator
) -> ConnectionTestResult:
    """GET an http or https connection's URL (with its login, if any) and say how it answered.

    The call is made from the API server, within a few seconds, without following redirects.
    """
    async with service.database.sessions() as session:  # no transaction held while we wait
        connection = reveal_connection(await get_connection_row(session, conn_id), service.secrets)
    if connection.conn_type.lower() not in TESTABLE_TYPES:
        raise InvalidRequest(
            f"Connection {conn_id!r} has type {connection.conn_type!r}; Weir can test only "
            f"{' and '.join(TESTABLE_TYPES)} connections."
        )
    result = await probe_http(connection)
    async with service.database.sessions.begin() as session:
        await record(session, operator, "connection.test", conn_id, service.clock.now(),
                     detail={"ok": result.ok, "status": result.status})  # fmt: skip
    return result


def connection_url(connection: Connection) -> str:
    """``host`` may hold a whole URL; otherwise the URL is built from type, host and port."""
    host = connection.host or ""
    base = host if "://" in host else f"{connection.conn_type.lower()}://{host}"
    if connection.port is not None and "://" not in host:
        base += f":{connection.port}"
    return base


async def probe_http(connection: Connection) -> ConnectionTestResult:
    auth = (connection.login, connection.password or "") if connection.login else None
    try:
        async with httpx.AsyncClient(timeout=TEST_TIMEOUT, follow_redirects=False) as client:
            response = await client.get(connection_url(connection), auth=auth)
    except (httpx.HTTPError, ValueError) as error:  # ValueError: a malformed URL
        return ConnectionTestResult(ok=False, status=None, detail=f"{type(error).__name__}: "
                                    f"{error}"[:500])  # fmt: skip
    status = response.status_code
    return ConnectionTestResult(
        ok=status < 400, status=status, detail=f"{status} {response.reason_phrase}"
    )
