"""The bound's scratch space: a PostgreSQL database with the minimal schema and a RabbitMQ queue,
both uniquely named, both removed on the way out (also after a failure), so that a measurement
leaves nothing behind on the shared services.

The queue has Weir's guarantees (durable quorum queue; messages are published persistent), so
that the bound prices the same broker work as Weir does, not a cheaper one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aio_pika.abc import AbstractConnection
from sqlalchemy.engine import make_url

__all__ = ["ADMIN_DATABASE", "libpq_dsn", "scratch_database", "scratch_queue"]

ADMIN_DATABASE = "postgres"
"""The database the scratch database is created and dropped from (every server has it)."""

SCHEMA = """
CREATE TABLE run (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE task (
    id bigserial PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES run (id),
    position integer NOT NULL,
    upstream_id bigint REFERENCES task (id),
    state text NOT NULL DEFAULT 'none',
    attempt integer NOT NULL DEFAULT 0,
    queued_at timestamptz,
    started_at timestamptz,
    ended_at timestamptz
);
CREATE INDEX task_run_state ON task (run_id, state);
CREATE INDEX task_upstream ON task (upstream_id);
"""
"""One upstream per task is all the fan-out and the chain need; the success statement still
checks the upstream's state, so queueing a downstream is a real decision, not a foregone one."""


def libpq_dsn(database_url: str, database: str) -> str:
    """``database`` on the server that the SQLAlchemy-style ``database_url`` names, for asyncpg."""
    url = make_url(database_url).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(database_url: str, name: str) -> AsyncIterator[str]:
    """Create database ``name`` with the bound's schema; yield its DSN; drop it at the end."""
    admin_dsn = libpq_dsn(database_url, ADMIN_DATABASE)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        dsn = libpq_dsn(database_url, name)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(SCHEMA)
        finally:
            await connection.close()
        yield dsn
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def scratch_queue(connection: AbstractConnection, name: str) -> AsyncIterator[str]:
    """Declare the quorum queue ``name``; yield it; delete it at the end."""
    async with connection.channel() as channel:
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    try:
        yield name
    finally:
        async with connection.channel() as channel:
            await channel.queue_delete(name)
