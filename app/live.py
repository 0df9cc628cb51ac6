"""The change feed: what lets the dashboard show a state change within a second, without polling.

Writers mark their session (``mark_changed``) when they change something people watch (task and
run states, new runs, DAGs). When such a session commits, PostgreSQL delivers a ``NOTIFY`` on
``weir_changes`` to every replica (sent inside the transaction, so a rollback sends nothing) and
this process publishes to its ``ChangeFeed`` at once. Live pages wait on the feed and re-render
only then; a burst of changes costs one render per page, not one per change.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

__all__ = ["CHANGES_CHANNEL", "ChangeFeed", "install_change_feed", "mark_changed"]

CHANGES_CHANNEL = "weir_changes"
_CHANGED = "weir.changed"
_FEED = "weir.change_feed"


class ChangeFeed:
    """A counter of committed changes that waiters can sleep on (one per process)."""

    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._changed = asyncio.Event()

    def close(self) -> None:
        """The server is stopping: wake every waiter for good, so event streams end at once."""
        self.closed = True
        self.publish()

    def publish(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, seen: int, timeout: float) -> int:
        """Wait until the version moves past ``seen`` (or ``timeout``); returns the version."""
        if self.version == seen and not self.closed:
            changed = self._changed
            try:
                async with asyncio.timeout(timeout):
                    await changed.wait()
            except TimeoutError:
                pass
        return self.version


def mark_changed(session: Any) -> None:
    """Publish a change when this session's transaction commits (an ``AsyncSession`` or a
    ``Session``). Cheap: a flag; the notification is sent once per transaction."""
    info = session.info
    info[_CHANGED] = True


def _before_commit(session: Session) -> None:
    if session.info.get(_CHANGED) and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANGES_CHANNEL})


def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        feed: ChangeFeed | None = session.info.get(_FEED)
        if feed is not None:
            feed.publish()


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
