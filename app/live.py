"""The change feed: what lets the dashboard show a state change within a second, without polling.

Writers mark their session (``mark_changed``) when they change something people watch (task and
run states, new runs, DAGs): a topic on the transaction's effects (``app.db.effects``). When such
a transaction commits, this process publishes to its
``ChangeFeed`` at once, and tells the other replicas with a ``NOTIFY`` on ``weir_changes``, sent
after the commit (so a rollback sends nothing) and coalesced: one statement per topic every
``BROADCAST_DELAY`` at most, however many transactions committed meanwhile, instead of one in
every transaction of the hot path. Live pages wait on the feed and re-render only then; a burst
of changes costs one render per page, not one per change.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from app.db.effects import Effects, add_commit_handler, effects_of, install_effects

__all__ = ["CHANGES_CHANNEL", "LOG", "STATE", "ChangeFeed", "install_change_feed", "mark_changed"]

CHANGES_CHANNEL = "weir_changes"
STATE = "state"
"""A change pages show: a task or run state, a new run, a DAG parse, a setting."""
LOG = "log"
"""Log text appended: only log streams care, so it does not re-render every open page."""
BROADCAST_DELAY = 0.05
"""Seconds a replica gathers its commits' topics before it tells the others in one go."""

log = logging.getLogger(__name__)


class ChangeFeed:
    """Counters of committed changes that waiters can sleep on (one feed per process).

    ``state_version`` counts the changes pages show; ``version`` counts those and log text too.
    """

    def __init__(self) -> None:
        self.id = secrets.token_hex(4)  # tells this process's versions from another replica's
        self.version = 0
        self.state_version = 0
        self.closed = False
        self._any = asyncio.Event()
        self._state = asyncio.Event()

    @property
    def state_mark(self) -> str:
        """Where the state stands, as a page records it (``<feed id>.<state version>``)."""
        return f"{self.id}.{self.state_version}"

    def close(self) -> None:
        """The server is stopping: wake every waiter for good, so event streams end at once."""
        self.closed = True
        self.publish(STATE)

    def receive(self, payload: str) -> None:
        """A ``NOTIFY`` from a replica (``<feed id>:<topic>``): this feed's own were published
        at their commit already; an empty payload (a reconnect: something may have been missed)
        is a state change."""
        sender, _, topic = payload.rpartition(":")
        if sender != self.id:
            self.publish(topic or STATE)

    def publish(self, topic: str = STATE) -> None:
        self.version += 1
        woken, self._any = self._any, asyncio.Event()
        woken.set()
        if topic != LOG:
            self.state_version += 1
            woken, self._state = self._state, asyncio.Event()
            woken.set()

    async def wait(self, seen: int, timeout: float, *, logs: bool = False) -> int:
        """Wait until the counter moves past ``seen`` (or ``timeout``) and return it: ``version``
        when ``logs`` (log streams), else ``state_version`` (pages)."""
        current = self.version if logs else self.state_version
        if current == seen and not self.closed:
            event = self._any if logs else self._state
            try:
                async with asyncio.timeout(timeout):
                    await event.wait()
            except TimeoutError:
                pass
        return self.version if logs else self.state_version


def mark_changed(session: Any, topic: str = STATE) -> None:
    """Publish a change of ``topic`` when this session's transaction commits (an
    ``AsyncSession`` or a ``Session``). Cheap: a flag; one notification per topic and commit."""
    effects_of(session).changes.add(topic)


def _publisher(feed: ChangeFeed, broadcast: Broadcast | None) -> Callable[[Effects], None]:
    """The commit handler that publishes a committed transaction's topics."""

    def publish(effects: Effects) -> None:
        if effects.changes:
            for topic in effects.changes:
                feed.publish(topic)
            if broadcast is not None:
                broadcast.add(effects.changes)

    return publish


class Broadcast:
    """Tells the other replicas what this one committed, coalesced (``BROADCAST_DELAY``)."""

    def __init__(self, engine: AsyncEngine, feed: ChangeFeed) -> None:
        self._engine = engine
        self._feed = feed
        self._pending: set[str] = set()
        self._sending: asyncio.Task[None] | None = None

    def add(self, topics: set[str]) -> None:
        self._pending |= topics
        if self._sending is None or self._sending.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: nobody in this process serves pages either
                return
            self._sending = loop.create_task(self._send(), name="change-broadcast")

    async def _send(self) -> None:
        """Send what gathered, until nothing is left (topics added while a send runs go next)."""
        while self._pending:
            await asyncio.sleep(BROADCAST_DELAY)
            topics, self._pending = self._pending, set()
            try:
                async with self._engine.connect() as connection:
                    for topic in sorted(topics):
                        await connection.execute(
                            text("SELECT pg_notify(:channel, :payload)"),
                            {"channel": CHANGES_CHANNEL, "payload": f"{self._feed.id}:{topic}"},
                        )
                    await connection.commit()
            except Exception as error:  # other replicas' pages catch up at their next change
                log.debug("could not tell other replicas of a change: %s", error)


def install_change_feed(
    session_class: type[Session],
    info: dict[str, Any],
    feed: ChangeFeed,
    engine: AsyncEngine | None = None,
) -> None:
    """Make sessions of ``session_class`` (whose ``info`` starts as ``info``) feed ``feed``;
    with ``engine`` (PostgreSQL), tell the other replicas too."""
    install_effects(session_class)
    broadcast = Broadcast(engine, feed) if engine is not None else None
    add_commit_handler(info, _publisher(feed, broadcast))
