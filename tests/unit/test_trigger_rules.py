"""Every trigger rule against Airflow's behaviour: when it runs, when it waits, and whether a rule
out of reach ends its task ``skipped`` or ``upstream_failed``."""

from __future__ import annotations

import itertools

import pytest

from weir.states import TaskState
from weir.task_options import TRIGGER_RULES
from weir.trigger_rules import Decision, decide

T = TaskState
D = Decision
RUN, WAIT, SKIP, UF = D.RUN, D.WAIT, D.SKIP, D.UPSTREAM_FAILED

Case = tuple[list[TaskState], Decision]

CASES: dict[str, list[Case]] = {
    "all_success": [
        ([T.SUCCESS, T.SUCCESS], RUN),
        ([T.SUCCESS, T.RUNNING], WAIT),
        ([T.SUCCESS, T.UP_FOR_RETRY], WAIT),  # a retry may still succeed
        ([T.SUCCESS, T.NONE], WAIT),
        ([T.FAILED, T.RUNNING], UF),  # certain at once: no need to wait for the rest
        ([T.UPSTREAM_FAILED, T.SUCCESS], UF),
        ([T.SKIPPED, T.SUCCESS], SKIP),
        ([T.SKIPPED, T.RUNNING], SKIP),  # Airflow skips at once too
        ([T.SKIPPED, T.FAILED], UF),  # a failure wins over a skip
        ([T.SKIPPED, T.SKIPPED], SKIP),
    ],
    "all_failed": [
        ([T.FAILED, T.FAILED], RUN),
        ([T.FAILED, T.UPSTREAM_FAILED], RUN),  # upstream_failed counts as failed
        ([T.FAILED, T.RUNNING], WAIT),
        ([T.FAILED, T.UP_FOR_RETRY], WAIT),
        ([T.FAILED, T.SUCCESS], SKIP),
        ([T.SUCCESS, T.RUNNING], SKIP),
        ([T.FAILED, T.SKIPPED], SKIP),
    ],
    "all_done": [
        ([T.SUCCESS, T.FAILED], RUN),
        ([T.SKIPPED, T.UPSTREAM_FAILED], RUN),
        ([T.SKIPPED, T.SKIPPED], RUN),
        ([T.FAILED, T.RUNNING], WAIT),
        ([T.FAILED, T.UP_FOR_RETRY], WAIT),  # not done while it may be retried
        ([T.SUCCESS, T.QUEUED], WAIT),
    ],
    "one_success": [
        ([T.SUCCESS, T.RUNNING], RUN),  # does not wait for the others
        ([T.SUCCESS, T.FAILED], RUN),
        ([T.FAILED, T.RUNNING], WAIT),
        ([T.SKIPPED, T.NONE], WAIT),
        ([T.SKIPPED, T.SKIPPED], SKIP),  # nothing taken: the skip flows on
        ([T.FAILED, T.SKIPPED], UF),
        ([T.FAILED, T.FAILED], UF),
        ([T.UPSTREAM_FAILED], UF),
    ],
    "one_failed": [
        ([T.FAILED, T.RUNNING], RUN),  # does not wait for the others
        ([T.UPSTREAM_FAILED, T.SUCCESS], RUN),
        ([T.SUCCESS, T.RUNNING], WAIT),
        ([T.SUCCESS, T.UP_FOR_RETRY], WAIT),
        ([T.SUCCESS, T.SUCCESS], SKIP),
        ([T.SUCCESS, T.SKIPPED], SKIP),
    ],
    "none_failed": [
        ([T.SUCCESS, T.SUCCESS], RUN),
        ([T.SUCCESS, T.SKIPPED], RUN),  # the join after a branch
        ([T.SKIPPED, T.SKIPPED], RUN),  # as in Airflow: no failure, so it runs
        ([T.SUCCESS, T.RUNNING], WAIT),
        ([T.SKIPPED, T.NONE], WAIT),
        ([T.FAILED, T.RUNNING], UF),
        ([T.UPSTREAM_FAILED, T.SUCCESS], UF),
        ([T.SKIPPED, T.FAILED], UF),
    ],
    "none_skipped": [
        ([T.SUCCESS, T.SUCCESS], RUN),
        ([T.SUCCESS, T.FAILED], RUN),  # failures are fine, only skips are not
        ([T.UPSTREAM_FAILED], RUN),
        ([T.SUCCESS, T.RUNNING], WAIT),
        ([T.SKIPPED, T.RUNNING], SKIP),
        ([T.SKIPPED, T.FAILED], SKIP),
    ],
    "always": [
        ([T.NONE, T.NONE], RUN),  # no dependency at all, not even a wait
        ([T.RUNNING], RUN),
        ([T.FAILED, T.SKIPPED], RUN),
        ([T.UPSTREAM_FAILED], RUN),
    ],
}


@pytest.mark.parametrize(
    ("rule", "upstream", "decision"),
    [(rule, upstream, decision) for rule, cases in CASES.items() for upstream, decision in cases],
)
def test_rule(rule: str, upstream: list[TaskState], decision: Decision) -> None:
    assert decide(rule, upstream) is decision
    assert decide(rule, reversed(upstream)) is decision  # the order of upstreams never matters


def test_every_rule_is_tested_and_known_to_the_sdk() -> None:
    assert set(CASES) == TRIGGER_RULES


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_a_task_with_no_upstream_runs_at_once(rule: str) -> None:
    assert decide(rule, []) is RUN


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_a_rule_never_decides_while_every_upstream_waits_except_always(rule: str) -> None:
    waiting = [T.NONE, T.SCHEDULED, T.QUEUED, T.RUNNING, T.UP_FOR_RETRY]
    assert decide(rule, waiting) is (RUN if rule == "always" else WAIT)


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_a_rule_always_decides_once_every_upstream_is_done(rule: str) -> None:
    done = [T.SUCCESS, T.FAILED, T.SKIPPED, T.UPSTREAM_FAILED]
    for first in done:
        for second in done:
            assert decide(rule, [first, second]) is not WAIT, (rule, first, second)


def test_an_unknown_rule_is_refused_with_the_list_of_rules() -> None:
    with pytest.raises(ValueError, match="all_success"):
        decide("some_success", [T.SUCCESS])


@pytest.mark.parametrize("rule", sorted(CASES))
def test_a_rule_reads_only_which_states_are_present_not_how_often(rule: str) -> None:
    """A report decides a join over thousands of upstreams from the states present among them
    (``app.scheduler.frontier``): that is right only while no rule counts. Every multiset of up
    to four upstream states must decide as its set of distinct states does."""
    states = list(TaskState)
    for size in range(1, 5):
        for combination in itertools.combinations_with_replacement(states, size):
            distinct = list(dict.fromkeys(combination))
            assert decide(rule, combination) == decide(rule, distinct), combination
