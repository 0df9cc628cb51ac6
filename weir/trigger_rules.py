"""Trigger rules: whether a task may run given its upstreams' states. Pure.

The eight rules and their outcomes are Airflow's (its ``TriggerRuleDep`` as the scheduler applies
it), because users bring DAGs and habits from there. Each rule answers one of four things:

- ``RUN``: the rule is met; schedule the task now.
- ``WAIT``: not decided yet; some upstream may still change the answer.
- ``SKIP`` / ``UPSTREAM_FAILED``: the rule can never be met any more; the task ends in that state
  without running. Which of the two follows Airflow: a rule that is out of reach because of an
  upstream failure answers ``UPSTREAM_FAILED`` (so the run's failure shows where it spread), one
  that is out of reach because of skips or successes answers ``SKIP`` (so a skip flows on).

A rule decides as soon as the answer is certain, without waiting for the other upstreams, as
Airflow does: an ``all_success`` task with one skipped upstream is skipped at once. A task without
upstreams runs at once, whatever its rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from weir.states import TaskState

__all__ = ["Decision", "decide"]


class Decision(StrEnum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


@dataclass(frozen=True, slots=True)
class _Tally:
    """Upstream states counted the way every rule reads them."""

    total: int
    success: int
    failed: int  # failed or upstream_failed: both mean "this branch of the graph broke"
    skipped: int

    @property
    def done(self) -> int:
        return self.success + self.failed + self.skipped

    @property
    def all_done(self) -> bool:
        return self.done == self.total

    @classmethod
    def of(cls, states: Iterable[TaskState]) -> _Tally:
        listed = list(states)
        return cls(
            total=len(listed),
            success=sum(s is TaskState.SUCCESS for s in listed),
            failed=sum(s in (TaskState.FAILED, TaskState.UPSTREAM_FAILED) for s in listed),
            skipped=sum(s is TaskState.SKIPPED for s in listed),
        )


def _all_success(t: _Tally) -> Decision:
    if t.failed:
        return Decision.UPSTREAM_FAILED
    if t.skipped:
        return Decision.SKIP
    return Decision.RUN if t.success == t.total else Decision.WAIT


def _all_failed(t: _Tally) -> Decision:
    if t.success or t.skipped:
        return Decision.SKIP
    return Decision.RUN if t.failed == t.total else Decision.WAIT


def _all_done(t: _Tally) -> Decision:
    return Decision.RUN if t.all_done else Decision.WAIT


def _one_success(t: _Tally) -> Decision:
    if t.success:
        return Decision.RUN
    if not t.all_done:
        return Decision.WAIT
    # Nothing succeeded: only skips means the path was not taken; any failure means it broke.
    return Decision.SKIP if t.skipped == t.total else Decision.UPSTREAM_FAILED


def _one_failed(t: _Tally) -> Decision:
    if t.failed:
        return Decision.RUN
    return Decision.SKIP if t.all_done else Decision.WAIT


def _none_failed(t: _Tally) -> Decision:
    if t.failed:
        return Decision.UPSTREAM_FAILED
    return Decision.RUN if t.all_done else Decision.WAIT


def _none_skipped(t: _Tally) -> Decision:
    if t.skipped:
        return Decision.SKIP
    return Decision.RUN if t.all_done else Decision.WAIT


def _always(t: _Tally) -> Decision:
    # Airflow's "no dependencies at all": the task does not even wait for its upstreams.
    return Decision.RUN


_RULES: dict[str, Callable[[_Tally], Decision]] = {
    "all_success": _all_success,
    "all_failed": _all_failed,
    "all_done": _all_done,
    "one_success": _one_success,
    "one_failed": _one_failed,
    "none_failed": _none_failed,
    "none_skipped": _none_skipped,
    "always": _always,
}


def decide(rule: str, upstream_states: Iterable[TaskState]) -> Decision:
    """What a task whose rule is ``rule`` should do now, given its direct upstreams' states.

    Raises ``ValueError`` for an unknown rule: options are checked when the DAG file is imported,
    so one here means a serialized version this code cannot read, and guessing would be worse.
    """
    try:
        rule_of = _RULES[rule]
    except KeyError:
        raise ValueError(
            f"Unknown trigger rule {rule!r}; the rules are {sorted(_RULES)}."
        ) from None
    tally = _Tally.of(upstream_states)
    if tally.total == 0:
        return Decision.RUN
    return rule_of(tally)
