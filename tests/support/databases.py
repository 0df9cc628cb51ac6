"""A fresh, migrated database per test: a SQLite file, or a PostgreSQL database cloned from a
template migrated once per schema version (cloning takes milliseconds; migrating, seconds)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.db.migrate import MIGRATIONS, upgrade_async
from tests.support.services import postgres_dsn, require_postgres

__all__ = ["create_postgres_database", "drop_postgres_database", "sqlite_database_url"]


async def sqlite_database_url(directory: Path) -> str:
    url = f"sqlite+aiosqlite:///{directory / 'weir.db'}"
    await upgrade_async(url)
    return url


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _template_name() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"weir_tpl_{digest.hexdigest()[:12]}"


async def _ensure_template(admin: asyncpg.Connection, base: str) -> str:
    name = _template_name()
    await admin.execute("SELECT pg_advisory_lock(4242)")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
            await upgrade_async(make_url(base).set(database=name).render_as_string(False))
    finally:
        await admin.execute("SELECT pg_advisory_unlock(4242)")
    return name


async def create_postgres_database() -> str:
    """A new database with the current schema; returns its SQLAlchemy URL."""
    base = postgres_dsn()
    await require_postgres(base)
    admin = await asyncpg.connect(_libpq(base))
    try:
        template = await _ensure_template(admin, base)
        name = f"weir_t_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    admin = await asyncpg.connect(_libpq(postgres_dsn()))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
