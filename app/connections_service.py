"""Connections as a use case: validation, encryption, masking, test calls and audit.

The REST API (``app/api/v1/connections.py``) and the dashboard (``app/dashboard/pages/
connections.py``) both call these functions, so a connection is validated, encrypted, masked and
audited the same way whichever door it came through; only ``origin`` in the audit entry differs.
Password and extra are Fernet-encrypted at rest and leave the service in clear only for a running
task (``reveal_connection``).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import record
from app.auth import Principal
from app.db.models import Connection as ConnectionRow
from app.live import mark_changed
from app.secrets import SecretBox
from app.state import ServiceState
from weir.errors import Conflict, InvalidRequest, NotFound
from weir.resources import Connection

__all__ = [
    "CONN_ID_PATTERN",
    "NO_NUL",
    "TESTABLE_TYPES",
    "ConnectionCreate",
    "ConnectionPatch",
    "ConnectionTestResult",
    "connection_url",
    "create_connection",
    "decrypt_extra",
    "delete_connection",
    "get_connection_row",
    "probe_http",
    "reveal_connection",
    "test_connection",
    "update_connection",
]

NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text
CONN_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
ConnId = Annotated[
    str,
    Field(min_length=1, max_length=250, pattern=CONN_ID_PATTERN,
          description="Letters, digits and _ . -", examples=["warehouse"]),
]  # fmt: skip
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
TESTABLE_TYPES = ("http", "https")
TEST_TIMEOUT = 5.0


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


class ConnectionTestResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ok": True, "status": 200, "detail": "200 OK"}]}
    )

    ok: bool = Field(description="Whether the target answered with a status below 400.")
    status: int | None = Field(description="The HTTP status it answered, if it answered.")
    detail: str


def decrypt_extra(row: ConnectionRow, secrets: SecretBox) -> dict[str, Any]:
    if row.extra_encrypted is None:
        return {}
    extra: dict[str, Any] = json.loads(secrets.decrypt(row.extra_encrypted))
    return extra


def reveal_connection(row: ConnectionRow, secrets: SecretBox) -> Connection:
    """The connection in clear, for the task of a running attempt (or a test call) only."""
    password = row.password_encrypted
    return Connection(
        conn_id=row.conn_id, conn_type=row.conn_type, host=row.host, port=row.port,
        login=row.login, schema=row.schema, description=row.description,
        password=secrets.decrypt(password) if password is not None else None,
        extra=decrypt_extra(row, secrets),
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


async def create_connection(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    body: ConnectionCreate,
    *,
    origin: str = "api",
) -> ConnectionRow:
    """Store a new connection (secrets encrypted) and audit it; 409 if its id is taken."""
    if await session.get(ConnectionRow, body.conn_id) is not None:
        raise Conflict(
            f"Connection {body.conn_id!r} exists already; edit it instead "
            f"(PATCH /api/v1/connections/{body.conn_id})."
        )
    row = ConnectionRow(conn_id=body.conn_id, conn_type=body.conn_type)
    fields = _apply(row, body, service.secrets)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as error:  # created by a concurrent request since we looked
        raise Conflict(f"Connection {body.conn_id!r} was created concurrently.") from error
    await record(session, principal, "connection.create", row.conn_id, service.clock.now(),
                 detail={"conn_type": row.conn_type, "fields": fields}, origin=origin)  # fmt: skip
    mark_changed(session)
    return row


async def update_connection(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    conn_id: str,
    body: ConnectionPatch,
    *,
    origin: str = "api",
) -> ConnectionRow:
    """Change the fields the body names; the others, the password included, are kept."""
    row = await get_connection_row(session, conn_id)
    if "conn_type" in body.model_fields_set and body.conn_type is None:
        raise InvalidRequest(
            "A connection always has a type; send a new conn_type or omit it.",
            errors=[{"field": "body.conn_type", "message": "cannot be null"}],
        )
    fields = _apply(row, body, service.secrets)
    await session.flush()
    await record(session, principal, "connection.update", conn_id, service.clock.now(),
                 detail={"fields": fields}, origin=origin)  # fmt: skip
    mark_changed(session)
    return row


async def delete_connection(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    conn_id: str,
    *,
    origin: str = "api",
) -> None:
    await session.delete(await get_connection_row(session, conn_id))
    await record(session, principal, "connection.delete", conn_id, service.clock.now(),
                 origin=origin)  # fmt: skip
    mark_changed(session)


async def test_connection(
    service: ServiceState, principal: Principal, conn_id: str, *, origin: str = "api"
) -> tuple[ConnectionTestResult, float]:
    """GET an http(s) connection's URL and say how it answered, with the seconds it took.

    Opens its own short transactions: none is held while the target is awaited.
    """
    async with service.database.sessions() as session:
        connection = reveal_connection(await get_connection_row(session, conn_id), service.secrets)
    if connection.conn_type.lower() not in TESTABLE_TYPES:
        raise InvalidRequest(
            f"Connection {conn_id!r} has type {connection.conn_type!r}; Weir can test only "
            f"{' and '.join(TESTABLE_TYPES)} connections."
        )
    started = time.perf_counter()
    result = await probe_http(connection)
    elapsed = time.perf_counter() - started
    async with service.database.sessions.begin() as session:
        await record(session, principal, "connection.test", conn_id, service.clock.now(),
                     detail={"ok": result.ok, "status": result.status}, origin=origin)  # fmt: skip
    return result, elapsed


def connection_url(connection: Connection) -> str:
    """``host`` may hold a whole URL; otherwise the URL is built from type, host and port."""
    host = connection.host or ""
    base = host if "://" in host else f"{connection.conn_type.lower()}://{host}"
    if connection.port is not None and "://" not in host:
        base += f":{connection.port}"
    return base


async def probe_http(connection: Connection) -> ConnectionTestResult:
    """One GET, without following redirects, within ``TEST_TIMEOUT`` seconds."""
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
