"""Workers' reports (finishes and log appends), as many as arrive together, each fenced and
answered on its own.

Successes, the common case, are set-based: one compare-and-set for the lot, then their results,
attempt records and logs in one statement each. Other outcomes (failed, a sensor's reschedule,
interrupted) take ``app.scheduler.outcomes`` one by one: they read retry and sensor options. Every
path decides its fence before it writes anything, so a refused item leaves no trace and the batch
needs no savepoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AttemptLog, TaskInstance, XCom
from app.db.transitions import close_attempts, set_attempt_states
from app.live import LOG, mark_changed
from app.scheduler.outcomes import record_failure, record_lost, record_reschedule
from app.scheduler.versions import VersionCache
from weir.messages import FinishRequest
from weir.states import TaskState

__all__ = ["Finish", "LogText", "ReportRefused", "Reports", "append_logs", "finish_attempts"]


@dataclass(frozen=True, slots=True)
class Finish:
    task_instance_id: int
    report: FinishRequest


@dataclass(frozen=True, slots=True)
class LogText:
    task_instance_id: int
    attempt: int
    data: str


@dataclass(frozen=True, slots=True)
class ReportRefused:
    status: int
    detail: str


@dataclass
class Reports:
    answers: list[TaskState | ReportRefused]  # in the order of the finishes
    # The tasks that succeeded, by run: ``frontier.advance_reported`` follows them in the same
    # transaction (the runs are not flagged: that would hand them to the scheduler's full pass).
    succeeded_in: dict[int, set[str]] = field(default_factory=dict)


async def finish_attempts(
    session: AsyncSession, finishes: Sequence[Finish], versions: VersionCache, now: datetime
) -> Reports:
    """Record how each attempt ended; answers (the task's new state, or 409) in order."""
    answers: dict[int, TaskState | ReportRefused] = {}
    successes = [(i, f) for i, f in enumerate(finishes) if f.report.state == "success"]
    runs: dict[int, set[str]] = {}
    for i, state in (await _succeed(session, [f for _, f in successes], now, runs)).items():
        answers[successes[i][0]] = state
    others = [(i, f) for i, f in enumerate(finishes) if f.report.state != "success"]
    if others:
        rows = await _load(session, {f.task_instance_id for _, f in others})
        for i, finish in others:
            answers[i] = await _finish_one(
                session, rows.get(finish.task_instance_id), finish, versions, now
            )
    return Reports([answers[i] for i in range(len(finishes))], runs)


async def _succeed(
    session: AsyncSession, finishes: Sequence[Finish], now: datetime, runs: dict[int, set[str]]
) -> dict[int, TaskState | ReportRefused]:
    """``running -> success`` for every attempt still current, with its result and log."""
    if not finishes:
        return {}
    attempts = [(f.task_instance_id, f.report.attempt) for f in finishes]
    moved = await set_attempt_states(
        session,
        attempts,
        expected=TaskState.RUNNING,
        target=TaskState.SUCCESS,
        end_date=now,
        lease_expires_at=None,
    )
    won = [f for f in _first_per_attempt(finishes) if f.task_instance_id in moved]
    if won:
        await _store_success(session, won, moved, now)
        for f in won:
            row = moved[f.task_instance_id]
            runs.setdefault(row.dag_run_id, set()).add(row.task_id)
    return {
        i: TaskState.SUCCESS
        if f.task_instance_id in moved
        else ReportRefused(409, _stale(f, "finish"))
        for i, f in enumerate(finishes)
    }


def _first_per_attempt(finishes: Sequence[Finish]) -> list[Finish]:
    """One report per attempt: a report repeated within a batch is answered, but stored once."""
    seen: dict[tuple[int, int], Finish] = {}
    for f in finishes:
        seen.setdefault((f.task_instance_id, f.report.attempt), f)
    return list(seen.values())


async def _store_success(
    session: AsyncSession, won: Sequence[Finish], moved: dict[int, Any], now: datetime
) -> None:
    """Results, attempt records, logs and run flags of the attempts that succeeded. No result
    is there to replace: a task instance runs again only after a clear, which drops it."""
    await session.execute(
        insert(XCom),
        [
            {
                "task_instance_id": f.task_instance_id,
                "dag_run_id": moved[f.task_instance_id].dag_run_id,
                "task_id": moved[f.task_instance_id].task_id,
                "value": f.report.result,
            }
            for f in won
        ],
    )
    await close_attempts(
        session,
        [(f.task_instance_id, f.report.attempt) for f in won],
        state=TaskState.SUCCESS,
        now=now,
    )
    await _insert_logs(
        session,
        [LogText(f.task_instance_id, f.report.attempt, f.report.log or "") for f in won],
        now,
    )


async def _finish_one(
    session: AsyncSession,
    ti: TaskInstance | None,
    finish: Finish,
    versions: VersionCache,
    now: datetime,
) -> TaskState | ReportRefused:
    """A failure, a sensor's reschedule or an interruption: ``outcomes`` decides, fenced."""
    report = finish.report
    outcome: TaskState | None = None
    if ti is not None:
        if report.state == "interrupted":
            reason = report.error or "The worker stopped while the attempt was running."
            outcome = await record_lost(session, ti, report.attempt, reason, now, max_lost=None)
        elif report.state == "reschedule":
            outcome = await record_reschedule(session, ti, report.attempt, now, versions)
        else:
            outcome = await record_failure(session, ti, report.attempt, report.error, now, versions)
    if outcome is None:
        doing = "be rescheduled" if report.state == "reschedule" else "finish"
        return ReportRefused(409, _stale(finish, doing))
    await _insert_logs(
        session, [LogText(finish.task_instance_id, report.attempt, report.log or "")], now
    )
    return outcome


async def _load(session: AsyncSession, ids: set[int]) -> dict[int, TaskInstance]:
    rows = await session.scalars(select(TaskInstance).where(TaskInstance.id.in_(ids)))
    return {ti.id: ti for ti in rows}


async def append_logs(
    session: AsyncSession, texts: Sequence[LogText], now: datetime
) -> list[ReportRefused | None]:
    """Append log text to attempts still running; None (appended) or 409 for each, in order.
    Marks a log change only: it wakes the dashboard's log streams, not every live page."""
    if not texts:
        return []
    pairs = {(t.task_instance_id, t.attempt) for t in texts}
    statement = select(TaskInstance.id, TaskInstance.attempt).where(
        tuple_(TaskInstance.id, TaskInstance.attempt).in_(pairs),
        TaskInstance.state == TaskState.RUNNING,
    )
    running = {(row.id, row.attempt) for row in await session.execute(statement)}
    current = [t for t in texts if (t.task_instance_id, t.attempt) in running]
    if await _insert_logs(session, current, now):
        mark_changed(session, LOG)
    return [
        None
        if (t.task_instance_id, t.attempt) in running
        else ReportRefused(409, _stale(t, "append to its log"))
        for t in texts
    ]


async def _insert_logs(session: AsyncSession, texts: Sequence[LogText], now: datetime) -> bool:
    """Insert the non-empty texts in one statement; returns whether there were any."""
    rows = [
        {
            "task_instance_id": t.task_instance_id,
            "attempt": t.attempt,
            "data": t.data,
            "created_at": now,
        }
        for t in texts
        if t.data
    ]
    if rows:
        await session.execute(insert(AttemptLog), rows)
    return bool(rows)


def _stale(item: Finish | LogText, doing: str) -> str:
    attempt = item.report.attempt if isinstance(item, Finish) else item.attempt
    return (
        f"Attempt {attempt} of task instance {item.task_instance_id} cannot {doing}: it is not the "
        "current attempt in the expected state (another worker claimed it, it was cleared, or it "
        "lapsed)."
    )
