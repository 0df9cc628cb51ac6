"""Schema migrations: ``weir db upgrade`` applies them; ``weir api`` refuses an old schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from app.db.engine import Database
from weir.errors import SchemaOutOfDate

__all__ = ["alembic_config", "check_schema_is_current", "head_revision", "upgrade", "upgrade_async"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Apply every migration (synchronous: the CLI calls it outside an event loop)."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_async(database_url: str) -> None:
    """``upgrade`` from inside an event loop (Alembic's env runs its own loop, so use a thread)."""
    await asyncio.to_thread(upgrade, database_url)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def check_schema_is_current(database: Database) -> None:
    """Raise ``SchemaOutOfDate`` naming the fix unless the database is at the newest revision."""

    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with database.engine.connect() as connection:
        revision = await connection.run_sync(current)
    head = head_revision()
    if revision != head:
        raise SchemaOutOfDate(
            f"The database schema is at revision {revision or 'none'}, this Weir needs {head}: "
            "run `weir db upgrade` (with the same WEIR_DATABASE_URL) and start again."
        )
