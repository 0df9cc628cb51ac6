"""Pooled PostgreSQL connections: one that sat idle is pinged before use, so a server restart or
a killed backend costs nobody an error; one used a moment ago is not pinged (the hot path pays no
round trips for it)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.db import engine as engine_module
from app.db.engine import create_database
from tests.support.databases import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.postgres


async def _kill_backends(url: str) -> int:
    """Terminate every other connection to the database ``url`` names."""
    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database="postgres"
    )
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            parsed.database,
        )
    finally:
        await admin.close()
    return int(killed)


async def test_an_idle_connection_killed_meanwhile_is_replaced_without_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.2)
    url = await create_postgres_database()
    database = create_database(url)
    try:
        async with database.sessions() as session:
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        await asyncio.sleep(0.3)
        assert await _kill_backends(url) >= 1
        async with database.sessions() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await database.dispose()
        await drop_postgres_database(url)


async def test_a_connection_used_a_moment_ago_is_not_pinged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 60.0)
    url = await create_postgres_database()
    database = create_database(url)
    pings = 0
    original = database.engine.dialect.do_ping

    def counting(connection: object) -> bool:
        nonlocal pings
        pings += 1
        return bool(original(connection))

    monkeypatch.setattr(database.engine.dialect, "do_ping", counting)
    try:
        for _ in range(5):
            async with database.sessions() as session:
                await session.scalar(text("SELECT 1"))
        assert pings == 0
    finally:
        await database.dispose()
        await drop_postgres_database(url)
