"""What a transaction asks for once it commits: the unit of work's effects.

Writers do not act while their transaction is open (it may still roll back, and a scheduler woken
before the commit would not see the change): they record what should follow on the session's one
``Effects`` (``effects_of``). After the commit, the one hook here hands it to the handlers
installed on the session factory (the change feed, ``app.live``), and whoever owns the
transaction acts on the rest with the ``Effects`` it holds (a request's session in ``api.deps``
wakes this process's scheduler and relay; the scheduler's loop reads the runs its step ended
before it commits, for their DAG callbacks and failure notifications). A rollback forgets it all,
so nothing follows a transaction that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from weir.states import DagRunState

__all__ = ["Effects", "add_commit_handler", "effects_of", "install_effects"]

_EFFECTS = "weir.effects"
_HANDLERS = "weir.commit_handlers"


@dataclass(slots=True)
class Effects:
    """The effects of one transaction, gathered while it runs."""

    scheduler: bool | None = None
    """Wake the schedulers: None no, else whether fully (see ``app.scheduler.wakeup``)."""
    relay: bool = False
    """Outbox rows were written: wake this process's relay."""
    finished_runs: dict[int, DagRunState] = field(default_factory=dict)
    """The runs this transaction ended, with their end state."""
    changes: set[str] = field(default_factory=set)
    """What live pages should hear of (``app.live`` topics)."""

    def wake_scheduler(self, *, full: bool) -> bool:
        """Ask for a wake-up; returns whether that asks for more than before (a hot one after
        nothing, or a full one after a hot one), so a NOTIFY is sent once per kind."""
        if self.scheduler is None or (full and not self.scheduler):
            self.scheduler = full
            return True
        return False

    def forget(self) -> None:
        self.scheduler, self.relay = None, False
        self.finished_runs.clear()
        self.changes.clear()


def effects_of(session: Any) -> Effects:
    """The effects of this session's current transaction (an ``AsyncSession`` or a
    ``Session``): the one accessor, made on first use."""
    info: dict[str, Any] = session.info
    effects: Effects | None = info.get(_EFFECTS)
    if effects is None:
        effects = info[_EFFECTS] = Effects()
    return effects


CommitHandler = Callable[[Effects], None]


def add_commit_handler(info: dict[str, Any], handler: CommitHandler) -> None:
    """Call ``handler`` with the effects of every committed transaction of the sessions whose
    ``info`` starts as ``info`` (a session factory's)."""
    info.setdefault(_HANDLERS, []).append(handler)


def install_effects(session_class: type[Session]) -> None:
    """Listen for the commits and rollbacks of ``session_class`` (once per class)."""
    if not event.contains(session_class, "after_commit", _after_commit):
        event.listen(session_class, "after_commit", _after_commit)
        event.listen(session_class, "after_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    """The next transaction of this session starts with no effects; whoever holds this one's
    (the transaction's owner) still reads it. Releasing a savepoint fires this event too: the
    transaction goes on, and so do its effects (a trigger's wake-up was lost that way)."""
    if session.in_nested_transaction():
        return
    effects: Effects | None = session.info.pop(_EFFECTS, None)
    if effects is not None:
        for handler in session.info.get(_HANDLERS, ()):
            handler(effects)


def _after_rollback(session: Session) -> None:
    """A rollback forgets the transaction's effects. A savepoint's (the transaction goes on)
    forgets only what live pages would hear of, as ever: what it undid cannot be told apart from
    what came before it, and the wake-ups and ended runs are not asked for inside savepoints."""
    if session.in_nested_transaction():
        effects_of(session).changes.clear()
        return
    effects: Effects | None = session.info.pop(_EFFECTS, None)
    if effects is not None:
        effects.forget()
