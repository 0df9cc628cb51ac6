"""Wake-ups (invariant 5): a finished task wakes the scheduler at once.

In one process an ``asyncio.Event``; across replicas PostgreSQL ``LISTEN/NOTIFY``: writers call
``wake_scheduler`` inside their transaction, so the notification is delivered only if it commits
(the NOTIFY by PostgreSQL, the in-process wake-up from the transaction's effects, ``db.effects``).

A wake-up says how much changed. ``full`` (the default: a trigger, a clear, a pause, a failure with
a retry) makes the next pass look at everything, its deadlines too; a hot one (only tasks that
succeeded, the common case by far) needs only the steps that follow a success. The payload of the
NOTIFY carries the replica that sent it, so a replica ignores its own: it was woken in-process
already, and a second pass would find nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.effects import effects_of
from app.db.engine import CONNECT_TIMEOUT
from app.db.outage import DatabaseOutage

__all__ = [
    "CHANNEL",
    "REPLICA",
    "Wakeup",
    "listen_for_wakeups",
    "parse_wakeup",
    "wake_relay",
    "wake_scheduler",
]

log = logging.getLogger(__name__)
CHANNEL = "weir_wakeup"
REPLICA = secrets.token_hex(6)
"""This process, as named in the NOTIFY payloads it sends."""
_HOT = "hot"


class Wakeup:
    """A level-triggered wake-up: notifications that arrive while the waiter works are not lost,
    and neither is whether any of them was ``full`` (``take_full``)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._full = True  # the first pass looks at everything

    def notify(self, *, full: bool = True) -> None:
        self._full = self._full or full
        self._event.set()

    def take_full(self) -> bool:
        """Whether a full wake-up came since the last call."""
        full, self._full = self._full, False
        return full

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


async def wake_scheduler(session: AsyncSession, *, full: bool = True) -> None:
    """Wake the schedulers when this transaction commits: other replicas through NOTIFY (sent by
    PostgreSQL only on commit), this process through the session's owner (see ``api.deps``).
    ``full=False``: only tasks succeeded (see the module's docstring)."""
    asks_more = effects_of(session).wake_scheduler(full=full)
    if asks_more and session.get_bind().dialect.name == "postgresql":
        payload = f"{REPLICA}:{'' if full else _HOT}"
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": payload},
        )


def wake_relay(session: AsyncSession) -> None:
    """Wake this process's outbox relay when the transaction commits (see ``api.deps``); other
    replicas' relays need not hear of it: any one relay publishes a row."""
    effects_of(session).relay = True


def parse_wakeup(payload: str) -> tuple[bool, bool]:
    """``(from this replica, full)`` of a NOTIFY payload; an empty one (sent after a reconnect,
    or by an older release) is a full wake-up from elsewhere."""
    replica, _, reason = payload.partition(":")
    return replica == REPLICA, reason != _HOT


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
