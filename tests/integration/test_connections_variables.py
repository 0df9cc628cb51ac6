"""Connections and variables over REST on both backends: CRUD, roles, secrets never in clear (in
answers or in the database row), key rotation across a restart, and the test-connection call
against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from app.auth import Role, create_token
from app.db.models import AuditEntry
from app.db.models import Connection as ConnectionRow
from app.db.models import Variable as VariableRow
from app.main import create_app
from app.secret_rotation import rotate_all
from app.secrets import SecretBox
from tests.support.stack import Stack, free_port, start_stack, wait_until
from weir import __version__
from weir.broker.memory import MemoryBroker

PASSWORD = "pa55-w0rd-never-shown"
API_KEY = "xk-extra-secret-value"
WAREHOUSE = {
    "conn_id": "warehouse", "conn_type": "postgres", "host": "db.example.com", "port": 5432,
    "login": "etl", "schema": "analytics", "password": PASSWORD,
    "extra": {"sslmode": "require", "api_key": API_KEY},
}  # fmt: skip


async def _client_with_role(stack: Stack, role: Role) -> httpx.AsyncClient:
    async with stack.database.sessions.begin() as session:
        token = await create_token(session, f"{role}-user", role, datetime.now(UTC))
    return httpx.AsyncClient(
        base_url=stack.settings.api_url, headers={"Authorization": f"Bearer {token}"}
    )


async def _raw_rows(stack: Stack) -> str:
    """Every stored byte of the connection and variable tables, as one string to search."""
    async with stack.database.sessions() as session:
        rows: list[Any] = [*(await session.scalars(select(ConnectionRow))).all()]
        rows += (await session.scalars(select(VariableRow))).all()
    return repr([vars(row) for row in rows])


async def test_connection_crud_never_returns_or_stores_secrets_in_clear(stack: Stack) -> None:
    client = stack.client
    created = await client.post("/api/v1/connections", json=WAREHOUSE)
    assert created.status_code == 201, created.text
    again = await client.post("/api/v1/connections", json=WAREHOUSE)
    assert again.status_code == 409
    body = created.json()
    assert body["password_set"] is True and body["schema"] == "analytics"
    assert body["extra"] == {"sslmode": "***", "api_key": "***"}

    kept = await client.patch("/api/v1/connections/warehouse", json={"host": "db2.example.com"})
    assert kept.json()["password_set"] is True and kept.json()["host"] == "db2.example.com"
    listed = await client.get("/api/v1/connections", params={"search": "DB2", "limit": 10})
    assert listed.json()["total"] == 1
    assert (await client.get("/api/v1/connections", params={"conn_type": "http"})).json() == {
        "connections": [], "total": 0,
    }  # fmt: skip
    answers = [created.text, kept.text, listed.text,
               (await client.get("/api/v1/connections/warehouse")).text]  # fmt: skip
    raw = await _raw_rows(stack)
    for text in [*answers, raw]:
        assert PASSWORD not in text and API_KEY not in text

    cleared = await client.patch("/api/v1/connections/warehouse", json={"password": None})
    assert cleared.json()["password_set"] is False
    assert (await client.delete("/api/v1/connections/warehouse")).status_code == 204
    assert (await client.get("/api/v1/connections/warehouse")).status_code == 404
    async with stack.database.sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
        details = json.dumps((await session.scalars(select(AuditEntry.detail))).all())
    assert {"connection.create", "connection.update", "connection.delete"} <= set(actions)
    assert PASSWORD not in details


async def test_variables_mask_secret_values_and_guess_secrecy_from_the_key(stack: Stack) -> None:
    client = stack.client
    plain = await client.put("/api/v1/variables/region", json={"value": "eu-west-1"})
    secret = await client.put("/api/v1/variables/service_api_key", json={"value": API_KEY})
    forced = await client.put(
        "/api/v1/variables/deploy_token", json={"value": "not-really", "is_secret": False}
    )
    assert plain.json() == {"key": "region", "value": "eu-west-1", "description": None,
                            "is_secret": False}  # fmt: skip
    assert secret.json()["value"] == "***" and secret.json()["is_secret"] is True
    assert forced.json()["is_secret"] is False
    listed = await client.get("/api/v1/variables", params={"order_by": "-key"})
    assert [v["key"] for v in listed.json()["variables"]] == [
        "service_api_key", "region", "deploy_token",
    ]  # fmt: skip
    for text in [secret.text, listed.text, await _raw_rows(stack)]:
        assert API_KEY not in text
    assert "eu-west-1" not in await _raw_rows(stack)  # every value is encrypted at rest

    replaced = await client.put("/api/v1/variables/region", json={"value": "us-east-2"})
    assert replaced.json()["value"] == "us-east-2"
    assert (await client.delete("/api/v1/variables/region")).status_code == 204
    assert (await client.get("/api/v1/variables/region")).status_code == 404


async def test_operators_read_and_test_but_only_admins_change(stack: Stack) -> None:
    await stack.client.post("/api/v1/connections", json=WAREHOUSE)
    async with (
        await _client_with_role(stack, Role.VIEWER) as viewer,
        await _client_with_role(stack, Role.OPERATOR) as operator,
    ):
        assert (await viewer.get("/api/v1/connections")).status_code == 403
        assert (await viewer.get("/api/v1/variables")).status_code == 403
        assert (await operator.get("/api/v1/connections/warehouse")).status_code == 200
        assert (await operator.get("/api/v1/variables")).status_code == 200
        changes = [
            await operator.post("/api/v1/connections", json={**WAREHOUSE, "conn_id": "x"}),
            await operator.patch("/api/v1/connections/warehouse", json={"port": 1}),
            await operator.delete("/api/v1/connections/warehouse"),
            await operator.put("/api/v1/variables/region", json={"value": "x"}),
        ]
    assert [r.status_code for r in changes] == [403, 403, 403, 403]


async def test_hostile_input_is_refused_with_problems(stack: Stack) -> None:
    client = stack.client
    bad = [
        await client.post("/api/v1/connections", json={**WAREHOUSE, "host": "a\x00b"}),
        await client.post("/api/v1/connections", json={**WAREHOUSE, "conn_id": "a/b"}),
        await client.post("/api/v1/connections", json={**WAREHOUSE, "port": 70000}),
        await client.post("/api/v1/connections", json={**WAREHOUSE, "unknown": 1}),
        await client.patch("/api/v1/connections/warehouse", json={"conn_type": None}),
        await client.put("/api/v1/variables/k", json={"value": "v", "description": "\x00"}),
        await client.get("/api/v1/connections", params={"search": "\x00"}),
        await client.get("/api/v1/variables", params={"order_by": "value"}),
    ]
    assert [r.status_code for r in bad[:4]] == [422] * 4
    assert bad[4].status_code == 404  # no such connection, whatever the body
    assert [r.status_code for r in bad[5:]] == [422] * 3
    assert all(r.headers["content-type"] == "application/problem+json" for r in bad)


async def test_import_errors_and_version(stack: Stack) -> None:
    (stack.dags_folder / "team").mkdir()
    stack.write_dag("team/broken.py", "import does_not_exist\n")

    async def recorded() -> Any:
        answer = (await stack.client.get("/api/v1/import-errors")).json()
        return answer if answer["total"] else None

    listed = await wait_until(recorded)
    assert listed["import_errors"][0]["fileloc"] == "team/broken.py"
    one = await stack.client.get("/api/v1/import-errors/team/broken.py")
    assert one.status_code == 200 and "does_not_exist" in one.json()["error"]
    assert (await stack.client.get("/api/v1/import-errors/team/none.py")).status_code == 404
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as anonymous:
        version = await anonymous.get("/api/v1/version")
    assert version.json() == {"version": __version__, "git_commit": None}


@asynccontextmanager
async def _restarted(stack: Stack, fernet_keys: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API again on the same database, configured with other Fernet keys."""
    keys = [SecretStr(key) for key in fernet_keys.split(",")]
    settings = stack.settings.model_copy(update={"fernet_keys": keys})
    app = create_app(settings, stack.database, MemoryBroker(), run_service_loops=False,
                     manage_broker=False)  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://weir", headers=stack.client.headers
    ) as client:
        yield client


async def test_key_rotation_keeps_secrets_readable(tmp_path: Path) -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    async with start_stack("sqlite", tmp_path, workers=0, fernet_keys=[key_a]) as stack:
        await stack.client.put("/api/v1/variables/region", json={"value": "eu-west-1"})
        await stack.client.post("/api/v1/connections", json=WAREHOUSE)
        async with _restarted(stack, f"{key_b},{key_a}") as client:
            assert (await client.get("/api/v1/variables/region")).json()["value"] == "eu-west-1"
            assert (await client.get("/api/v1/connections/warehouse")).json()["extra"]
        report = await rotate_all(stack.database, SecretBox([key_b, key_a]))
        rows = {done.table: done.rows for done in report.tables}
        assert (rows["connection"], rows["variable"]) == (1, 1)
        async with _restarted(stack, key_b) as client:  # key A is gone now
            assert (await client.get("/api/v1/variables/region")).json()["value"] == "eu-west-1"
            assert (await client.get("/api/v1/connections/warehouse")).status_code == 200
        async with stack.database.sessions() as session:
            row = await session.get(ConnectionRow, "warehouse")
        assert row is not None and row.password_encrypted is not None
        assert SecretBox([key_b]).decrypt(row.password_encrypted) == PASSWORD


@asynccontextmanager
async def _http_server(status: int) -> AsyncIterator[int]:
    """A tiny HTTP server (an external edge) that checks basic auth and answers ``status``."""
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        seen.append(request)
        writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        yield port
    assert all("Authorization: Basic" in request for request in seen)


async def test_test_connection_reports_how_an_http_target_answered(stack: Stack) -> None:
    async with _http_server(204) as port:
        await stack.client.post("/api/v1/connections", json={
            "conn_id": "api", "conn_type": "http", "host": "127.0.0.1", "port": port,
            "login": "me", "password": PASSWORD,
        })  # fmt: skip
        ok = await stack.client.post("/api/v1/connections/api/test")
    assert ok.json() == {"ok": True, "status": 204, "detail": "204 Whatever"}
    async with _http_server(503) as port:
        await stack.client.patch("/api/v1/connections/api", json={"port": port})
        down = await stack.client.post("/api/v1/connections/api/test")
    assert down.json()["ok"] is False and down.json()["status"] == 503
    await stack.client.patch("/api/v1/connections/api", json={"port": free_port()})
    refused = await stack.client.post("/api/v1/connections/api/test")
    assert refused.json()["ok"] is False and refused.json()["status"] is None
    await stack.client.post("/api/v1/connections", json=WAREHOUSE)
    assert (await stack.client.post("/api/v1/connections/warehouse/test")).status_code == 422
