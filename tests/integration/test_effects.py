"""The unit of work's effects (``app.db.effects``): what a transaction asked for reaches whoever
acts after its commit, and nothing of a transaction that rolled back does."""

from __future__ import annotations

from app.db.effects import Effects, add_commit_handler, effects_of
from app.db.engine import Database
from app.live import mark_changed
from app.scheduler.wakeup import wake_relay, wake_scheduler
from weir.states import DagRunState


def _record(database: Database) -> list[Effects]:
    committed: list[Effects] = []
    add_commit_handler(database.sessions.kw["info"], committed.append)
    return committed


async def test_a_commit_hands_its_effects_over_once(database: Database) -> None:
    committed = _record(database)
    async with database.sessions() as session:
        effects = effects_of(session)
        async with session.begin():
            await wake_scheduler(session, full=False)
            await wake_scheduler(session, full=False)
            wake_relay(session)
            mark_changed(session)
            effects_of(session).finished_runs[7] = DagRunState.FAILED
        assert committed == [effects]
        assert (effects.scheduler, effects.relay, effects.changes) == (False, True, {"state"})
        assert effects.finished_runs == {7: DagRunState.FAILED}
        async with session.begin():
            assert effects_of(session) is not effects  # the next transaction starts afresh
    assert len(committed) == 2


async def test_a_full_wake_up_outranks_a_hot_one(database: Database) -> None:
    async with database.sessions.begin() as session:
        await wake_scheduler(session, full=False)
        await wake_scheduler(session)
        await wake_scheduler(session, full=False)
        assert effects_of(session).scheduler is True


async def test_a_rollback_forgets_everything(database: Database) -> None:
    committed = _record(database)
    async with database.sessions() as session:
        effects = effects_of(session)
        async with session.begin():
            await wake_scheduler(session)
            wake_relay(session)
            mark_changed(session)
            effects_of(session).finished_runs[7] = DagRunState.SUCCESS
            await session.rollback()
    assert committed == []
    assert effects == Effects()


async def test_a_savepoint_rolled_back_forgets_only_its_changes(database: Database) -> None:
    """As before the unit of work: live pages hear nothing of it, the wake-up asked before
    it stands."""
    committed = _record(database)
    async with database.sessions() as session, session.begin():
        await wake_scheduler(session)
        async with session.begin_nested() as savepoint:
            mark_changed(session)
            await savepoint.rollback()
    assert [(e.scheduler, e.changes) for e in committed] == [(True, set())]


async def test_a_released_savepoint_keeps_the_transactions_effects(database: Database) -> None:
    """Releasing a savepoint fires SQLAlchemy's ``after_commit`` too; the transaction goes on,
    and what it asked for before and after the savepoint must still reach its owner (a run's
    creation, in a savepoint, once lost its trigger's wake-up: 5 s until the next sweep)."""
    committed = _record(database)
    async with database.sessions() as session:
        effects = effects_of(session)
        async with session.begin():
            mark_changed(session)
            async with session.begin_nested():
                wake_relay(session)
            await wake_scheduler(session)
            assert effects_of(session) is effects
        assert committed == [effects]
        assert (effects.scheduler, effects.relay, effects.changes) == (True, True, {"state"})
