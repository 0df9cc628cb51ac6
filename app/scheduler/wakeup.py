"""Wake-ups (invariant 5): a finished task wakes the scheduler at once.

In one process an ``asyncio.Event``; across replicas PostgreSQL ``LISTEN/NOTIFY``: writers call
``announce`` inside their transaction, so the notification is delivered only if it commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import CONNECT_TIMEOUT
from app.db.outage import DatabaseOutage

__all__ = ["CHANNEL", "WAKE_SCHEDULER", "Wakeup", "listen_for_wakeups", "wake_scheduler"]

log = logging.getLogger(__name__)
CHANNEL = "weir_wakeup"
WAKE_SCHEDULER = "weir.wake_scheduler"


class Wakeup:
    """A level-triggered wake-up: notifications that arrive while the waiter works are not lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until notified or ``timeout`` seconds pass; returns whether it was notified."""
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


async def wake_scheduler(session: AsyncSession) -> None:
    """Wake the schedulers when this transaction commits: other replicas through NOTIFY (sent by
    PostgreSQL only on commit), this process through the session's owner (see ``api.deps``)."""
    session.info[WAKE_SCHEDULER] = True
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


async def listen_for_wakeups(
    database_url: str,
    callbacks: Mapping[str, Callable[[str], None]],
    stop: asyncio.Event,
    *,
    outage: DatabaseOutage | None = None,
) -> None:
    """Call ``callbacks[channel](payload)`` on each NOTIFY of its channel until ``stop``;
    reconnects after a lost connection, calling every callback once then with an empty payload
    (something may have been missed). Failed reconnections count towards ``outage`` (logged
    once per outage there), and a working one ends it."""
    import asyncpg  # only PostgreSQL deployments listen

    url = make_url(database_url).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    while not stop.is_set():
        try:
            connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            if outage is None:
                log.warning("cannot LISTEN for wake-ups (%s); retrying in 1 s", error)
            else:
                outage.failed(error)
            await _wait_or_stop(stop, 1.0)
            continue
        if outage is not None:
            outage.recovered()
        try:
            for channel, callback in callbacks.items():
                await connection.add_listener(
                    channel, lambda _c, _pid, _ch, payload, call=callback: call(payload)
                )
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _c, lost=lost: lost.set())
            for callback in callbacks.values():  # catch up on what came while not listening
                callback("")
            await _wait_either(stop, lost)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
            pass  # lost while subscribing: the connection is replaced at once, as when lost later
        finally:
            await connection.close(timeout=2)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


async def _wait_either(first: asyncio.Event, second: asyncio.Event) -> None:
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
