"""One engine and one session factory per process, built from Settings and passed explicitly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from app.db.outage import DatabaseOutage, install_outage_tracking
from app.live import ChangeFeed, install_change_feed
from app.metrics import install_database_metrics

__all__ = ["CONNECT_TIMEOUT", "POOL_TIMEOUT", "Database", "create_database"]

CONNECT_TIMEOUT = 5.0
"""Seconds a new PostgreSQL connection may take: a database that is gone fails requests fast."""
POOL_TIMEOUT = 10.0
"""Seconds a request waits for a pooled connection before it answers 503."""


class WeirSession(Session):
    """The sessions of Weir's engines: the change feed listens to their commits."""


@dataclasses.dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    changes: ChangeFeed = dataclasses.field(default_factory=ChangeFeed)
    outage: DatabaseOutage = dataclasses.field(default_factory=DatabaseOutage)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(url: str, *, pool_size: int = 10) -> Database:
    """Engine + sessions for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    # A failed statement's error text must not carry its parameters (passwords, secrets, tokens):
    # it ends up in logs and on stderr.
    options: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": 30}
    else:
        options.update(
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_timeout=POOL_TIMEOUT,
            connect_args={"timeout": CONNECT_TIMEOUT},
        )
    engine = create_async_engine(url, **options)
    install_database_metrics(engine)
    outage = DatabaseOutage()
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
    else:
        install_outage_tracking(engine, outage)
    changes = ChangeFeed()
    info: dict[str, Any] = {}
    install_change_feed(
        WeirSession, info, changes, engine if parsed.get_backend_name() != "sqlite" else None
    )
    sessions = async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=WeirSession, info=info
    )
    return Database(engine, sessions, changes, outage)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy's "begin" event open transactions itself (see _begin_immediate).
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock at BEGIN: a deferred transaction that reads, then writes after
    another connection committed, fails at once with SQLITE_BUSY instead of waiting its turn."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")
