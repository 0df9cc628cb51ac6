"""The change feed: what lets the dashboard show a state change within a second, without polling.

Writers mark their session (``mark_changed``) when they change something people watch (task and
run states, new runs, DAGs). When such a session commits, PostgreSQL delivers a ``NOTIFY`` on
``weir_changes`` to every replica (sent inside the transaction, so a rollback sends nothing) and
this process publishes to its ``ChangeFeed`` at once. Live pages wait on the feed and re-render
only then; a burst of changes costs one render per page, not one per change.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

__all__ = ["CHANGES_CHANNEL", "LOG", "STATE", "ChangeFeed", "install_change_feed", "mark_changed"]

CHANGES_CHANNEL = "weir_changes"
STATE = "state"
"""A change pages show: a task or run state, a new run, a DAG parse, a setting."""
LOG = "log"
"""Log text appended: only log streams care, so it does not re-render every open page."""
_CHANGED = "weir.changed"
_FEED = "weir.change_feed"


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
    topics: set[str] = session.info.setdefault(_CHANGED, set())
    topics.add(topic)


def _before_commit(session: Session) -> None:
    topics = session.info.get(_CHANGED)
    if topics and session.get_bind().dialect.name == "postgresql":
        for topic in sorted(topics):
            session.execute(
                text("SELECT pg_notify(:channel, :topic)"),
                {"channel": CHANGES_CHANNEL, "topic": topic},
            )


def _after_commit(session: Session) -> None:
    topics = session.info.pop(_CHANGED, None)
    feed: ChangeFeed | None = session.info.get(_FEED)
    if topics and feed is not None:
        for topic in topics:
            feed.publish(topic)


def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def install_change_feed(
    session_class: type[Session], info: dict[str, Any], feed: ChangeFeed
) -> None:
    """Make sessions of ``session_class`` (whose ``info`` starts as ``info``) feed ``feed``."""
    info[_FEED] = feed
    if not event.contains(session_class, "before_commit", _before_commit):
        event.listen(session_class, "before_commit", _before_commit)
        event.listen(session_class, "after_commit", _after_commit)
        event.listen(session_class, "after_rollback", _after_rollback)
