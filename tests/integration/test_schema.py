"""The migrations and the models describe the same schema, and ``weir api`` refuses an old one."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.db.engine import create_database
from app.db.migrate import check_schema_is_current
from app.db.models import Base
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_database_url,
)
from weir.errors import SchemaOutOfDate


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


@pytest.mark.postgres
async def test_autogenerate_finds_no_difference_on_postgres() -> None:
    url = await create_postgres_database()
    database = create_database(url)
    try:
        async with database.engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
        await check_schema_is_current(database)
    finally:
        await database.dispose()
        await drop_postgres_database(url)


async def test_autogenerate_finds_no_difference_on_sqlite(tmp_path: Path) -> None:
    database = create_database(await sqlite_database_url(tmp_path))
    try:
        async with database.engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await database.dispose()


async def test_an_unmigrated_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    database = create_database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(SchemaOutOfDate, match="weir db upgrade"):
            await check_schema_is_current(database)
    finally:
        await database.dispose()
