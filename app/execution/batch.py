"""One worker batch (``POST /execution/v1/batch``): claims, reports and log text that were ready
together, in one transaction, each item authorised by its own token, fenced and answered on its
own, exactly as the one-item calls would answer it.

Log text goes first (a task's last lines and its report may share a batch), then reports, then
claims. An unexpected error rolls the whole batch back and answers 500: the worker sends it again,
and the fences make the repeat harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.execution.claims import Claim, ClaimRefused, claim_attempts
from app.execution.reports import Finish, LogText, ReportRefused, append_logs, finish_attempts
from app.execution.tokens import AttemptTokens
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
    finished: bool  # a report changed a task's state: the scheduler has something to do
    only_successes: bool  # ...and each of them was a success (a hot wake-up is enough)


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

    reports = [Finish(item.task_instance_id, item) for _, item in finishes]
    finished, only_successes = False, True
    for (i, _), state in zip(
        finishes, await finish_attempts(session, reports, versions, now), strict=True
    ):
        if isinstance(state, ReportRefused):
            answers[i] = _refused(state)
        else:
            finished, only_successes = True, only_successes and state is TaskState.SUCCESS
            answers[i] = ItemAnswer(status=200, finish=FinishAccepted(state=state))

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
    return BatchOutcome([a for a in answers if a is not None], finished, only_successes)


def _refused(refused: ReportRefused) -> ItemAnswer:
    return ItemAnswer(status=refused.status, detail=refused.detail)
