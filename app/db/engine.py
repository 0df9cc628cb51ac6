"""One engine and one session factory per process, built from Settings and passed explicitly."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
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
PING_AFTER_IDLE = 1.0
"""A pooled PostgreSQL connection idle longer than this is pinged before use (and replaced if
dead): a restart or a lost network shows on idle connections. One in use a moment ago is not:
SQLAlchemy's ``pool_pre_ping`` would cost three round trips on every transaction of the hot path,
and a connection that died in between fails its transaction, which callers retry anyway."""


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
        _ping_idle_connections(engine)
    changes = ChangeFeed()
    info: dict[str, Any] = {}
    install_change_feed(
        WeirSession, info, changes, engine if parsed.get_backend_name() != "sqlite" else None
    )
    sessions = async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=WeirSession, info=info
    )
    return Database(engine, sessions, changes, outage)


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Ping a connection at checkout if it sat idle for ``PING_AFTER_IDLE``; a dead one is
    replaced at once (``DisconnectionError`` makes the pool connect anew)."""
    pool_events = engine.sync_engine.pool

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"idle connection is gone: {error}") from error

    event.listen(pool_events, "checkin", checked_in)
    event.listen(pool_events, "checkout", checked_out)


_IDLE_SINCE = "weir_idle_since"


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
