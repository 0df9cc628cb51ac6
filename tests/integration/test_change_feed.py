"""The change feed behind live pages: a committed state change is published in this process at
once and, on PostgreSQL, reaches other replicas through NOTIFY; a rolled-back one reaches nobody."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.db.engine import Database, create_database
from app.db.migrate import upgrade_async
from app.live import CHANGES_CHANNEL, LOG, ChangeFeed, mark_changed
from app.scheduler.wakeup import listen_for_wakeups
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_database_url,
)


@pytest.fixture
async def database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    if backend == "postgres":
        url = await create_postgres_database()
    else:
        url = await sqlite_database_url(tmp_path)
        await upgrade_async(url)
    database = create_database(url)
    try:
        yield database
    finally:
        await database.dispose()
        if backend == "postgres":
            await drop_postgres_database(url)


async def test_a_marked_commit_publishes_and_a_rollback_does_not(database: Database) -> None:
    feed = database.changes
    seen = feed.state_version

    async with database.sessions() as session, session.begin():
        mark_changed(session)
        await session.rollback()
    assert await feed.wait(seen, timeout=0.2) == seen

    async with database.sessions.begin() as session:
        pass  # a commit that changed nothing people watch
    assert await feed.wait(seen, timeout=0.2) == seen

    waiter = asyncio.create_task(feed.wait(seen, timeout=5))
    async with database.sessions.begin() as session:
        mark_changed(session)
    assert await waiter == seen + 1


@pytest.mark.postgres
async def test_another_replica_hears_of_a_commit() -> None:
    """NOTIFY is PostgreSQL's (standalone SQLite is one process)."""
    url = await create_postgres_database()
    database = create_database(url)
    other, stop = ChangeFeed(), asyncio.Event()
    listener = asyncio.create_task(listen_for_wakeups(url, {CHANGES_CHANNEL: other.receive}, stop))
    try:
        connected = await other.wait(0, timeout=10)  # the listener catches up once connected
        assert connected >= 1

        async with database.sessions() as session, session.begin():
            mark_changed(session)
            await session.rollback()
        assert await other.wait(connected, timeout=0.3) == connected

        async with database.sessions.begin() as session:
            mark_changed(session)
        assert await other.wait(connected, timeout=5) == connected + 1

        logs_seen = other.version
        async with database.sessions.begin() as session:
            mark_changed(session, LOG)
        assert await other.wait(logs_seen, timeout=5, logs=True) == logs_seen + 1
        assert other.state_version == connected + 1  # the topic travelled with the NOTIFY
    finally:
        stop.set()
        await listener
        await database.dispose()
        await drop_postgres_database(url)


async def test_log_text_wakes_log_streams_but_not_pages(database: Database) -> None:
    feed = database.changes
    pages, streams = feed.state_version, feed.version
    page_waiter = asyncio.create_task(feed.wait(pages, timeout=0.5))
    stream_waiter = asyncio.create_task(feed.wait(streams, timeout=5, logs=True))
    async with database.sessions.begin() as session:
        mark_changed(session, LOG)
    assert await stream_waiter == streams + 1
    assert await page_waiter == pages  # timed out: no page re-renders for log text

    async with database.sessions.begin() as session:
        mark_changed(session)
    assert (feed.state_version, feed.version) == (pages + 1, streams + 2)


@pytest.mark.postgres
async def test_a_replica_counts_its_own_commit_once() -> None:
    """Its own NOTIFY comes back through its listener; the commit was published already."""
    url = await create_postgres_database()
    database = create_database(url)
    feed, stop = database.changes, asyncio.Event()
    listener = asyncio.create_task(listen_for_wakeups(url, {CHANGES_CHANNEL: feed.receive}, stop))
    try:
        connected = await feed.wait(0, timeout=10)
        async with database.sessions.begin() as session:
            mark_changed(session)
        await asyncio.sleep(0.5)  # well past the broadcast's coalescing delay
        assert feed.state_version == connected + 1
    finally:
        stop.set()
        await listener
        await database.dispose()
        await drop_postgres_database(url)
