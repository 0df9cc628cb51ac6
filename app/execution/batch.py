"""One worker batch (``POST /execution/v1/batch``): claims, reports and log text that were ready
together, in one transaction, each item authorised by its own token, fenced and answered on its
own, exactly as the one-item calls would answer it.

Log text goes first (a task's last lines and its report may share a batch), then reports, then
claims. An unexpected error rolls the whole batch back and answers 500: the worker sends it again,
and the fences make the repeat harmless.

What successes make possible is done in the same transaction, as the scheduler would do it next:
the runs they flagged are advanced (their next tasks scheduled and queued, with their outbox rows)
and the slots they freed are taken by waiting tasks. The relay is woken after the commit; the
scheduler only when something is its own business (a run ends, a task failed or must poke again),
so a chain's next task is queued one transaction, not one scheduler wake-up, after the report.
Runs are taken with ``SKIP LOCKED`` and capacity under its advisory locks, exactly as the
scheduler does, so replicas and the scheduler still never advance a run twice (invariant 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.execution.claims import Claim, ClaimRefused, claim_attempts
from app.execution.reports import Finish, LogText, ReportRefused, append_logs, finish_attempts
from app.execution.tokens import AttemptTokens
from app.scheduler.frontier import advance_reported
from app.scheduler.queueing import queue_scheduled
from app.scheduler.versions import VersionCache
from weir.messages import (
    ClaimItem,
    FinishAccepted,
    FinishItem,
    ItemAnswer,
    LogItem,
)
from weir.states import TaskState

__all__ = ["BatchOutcome", "Limits", "run_batch"]

UNAUTHORISED = "The token does not authorise this attempt."
_DONE = ItemAnswer(status=200)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    answers: list[ItemAnswer]
    wake_scheduler: bool | None  # None: no need; else whether the wake-up is full
    queued: bool  # outbox rows were written: wake the relay


@dataclass(frozen=True, slots=True)
class Limits:
    lease_seconds: float
    heartbeat_interval: float


async def run_batch(
    session: AsyncSession,
    items: Sequence[ClaimItem | FinishItem | LogItem],
    tokens: AttemptTokens,
    versions: VersionCache,
    now: datetime,
    limits: Limits,
) -> BatchOutcome:
    answers: list[ItemAnswer | None] = [
        None
        if tokens.is_valid(item.token, item.task_instance_id, item.attempt)
        else ItemAnswer(status=401, detail=UNAUTHORISED)
        for item in items
    ]
    authorised = [(i, item) for i, item in enumerate(items) if answers[i] is None]
    logs = [(i, item) for i, item in authorised if isinstance(item, LogItem)]
    finishes = [(i, item) for i, item in authorised if isinstance(item, FinishItem)]
    claims = [(i, item) for i, item in authorised if isinstance(item, ClaimItem)]

    texts = [LogText(item.task_instance_id, item.attempt, item.data) for _, item in logs]
    for (i, _), log_refused in zip(logs, await append_logs(session, texts, now), strict=True):
        answers[i] = _DONE if log_refused is None else _refused(log_refused)

    reports = await finish_attempts(
        session, [Finish(item.task_instance_id, item) for _, item in finishes], versions, now
    )
    failed_or_waiting = False
    for (i, _), state in zip(finishes, reports.answers, strict=True):
        if isinstance(state, ReportRefused):
            answers[i] = _refused(state)
        else:
            failed_or_waiting = failed_or_waiting or state is not TaskState.SUCCESS
            answers[i] = ItemAnswer(status=200, finish=FinishAccepted(state=state))
    ending, queued = await _follow_successes(session, reports.succeeded_in, versions, now)

    wanted = [Claim(item.task_instance_id, item.attempt, item.worker) for _, item in claims]
    claimed = await claim_attempts(
        session,
        wanted,
        versions,
        now,
        lease_seconds=limits.lease_seconds,
        heartbeat_interval=limits.heartbeat_interval,
    )
    for (i, _), claim in zip(claims, claimed, strict=True):
        if isinstance(claim, ClaimRefused):
            answers[i] = ItemAnswer(status=claim.status, detail=claim.detail)
        else:
            answers[i] = ItemAnswer(status=200, claim=claim)
    wake = True if failed_or_waiting else (False if ending else None)
    return BatchOutcome([a for a in answers if a is not None], wake, queued)


async def _follow_successes(
    session: AsyncSession,
    succeeded: dict[int, set[str]],
    versions: VersionCache,
    now: datetime,
) -> tuple[bool, bool]:
    """Advance the runs of these successes (task ids by run) and fill the slots they freed;
    returns (a run is left for the scheduler to end, something may have been queued)."""
    if not succeeded:
        return False, False
    advanced = await advance_reported(session, versions, now, succeeded)
    queued = await queue_scheduled(session, now, new=advanced.scheduled)
    return advanced.ending > 0, advanced.advanced > 0 or queued > 0


def _refused(refused: ReportRefused) -> ItemAnswer:
    return ItemAnswer(status=refused.status, detail=refused.detail)
