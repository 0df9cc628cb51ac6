"""Invariant 5 across replicas: a change committed through one replica wakes another's scheduler
through PostgreSQL LISTEN/NOTIFY at once, not at its next safety sweep."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.db.engine import create_database
from app.scheduler.wakeup import CHANNEL, Wakeup, listen_for_wakeups, wake_scheduler
from tests.support.databases import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.postgres


async def test_a_commit_elsewhere_wakes_the_listener_and_a_rollback_does_not() -> None:
    url = await create_postgres_database()
    database = create_database(url)
    wakeup, stop = Wakeup(), asyncio.Event()
    listener = asyncio.create_task(
        listen_for_wakeups(url, {CHANNEL: lambda _payload: wakeup.notify()}, stop)
    )
    try:
        # The listener announces itself once connected (it catches up on missed changes).
        assert await wakeup.wait(10)

        async with database.sessions() as session, session.begin():
            await wake_scheduler(session)
            await session.rollback()
        assert not await wakeup.wait(0.3), "a rolled-back change must not wake anyone"

        started = time.monotonic()
        async with database.sessions.begin() as session:
            await wake_scheduler(session)
        assert await wakeup.wait(5)
        assert time.monotonic() - started < 1.0
    finally:
        stop.set()
        await listener
        await database.dispose()
        await drop_postgres_database(url)
