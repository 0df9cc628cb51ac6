"""The pure capacity decision: priority order, pools, max_active_tasks, and the words of reasons."""

from __future__ import annotations

from app.scheduler.capacity import Block, Candidate, Capacity, admit, describe


def _candidate(
    ti_id: int, *, pool: str = "p", slots: int = 1, weight: int = 1, dag: str = "d"
) -> Candidate:
    return Candidate(ti_id, dag, pool, slots, weight)


def test_highest_priority_first_then_oldest() -> None:
    capacity = Capacity(pool_size={"p": 2}, dag_limit={"d": 16})
    admitted, blocked = admit(
        [_candidate(1), _candidate(2, weight=5), _candidate(3, weight=5)], capacity
    )
    assert [c.id for c in admitted] == [2, 3]
    assert blocked == {1: Block("pool_full", "p", 2, 2, 1)}
    assert capacity.pool_taken == {"p": 2}


def test_occupied_slots_count_and_a_small_task_may_pass_a_big_one() -> None:
    capacity = Capacity(pool_size={"p": 4}, pool_taken={"p": 2})
    admitted, blocked = admit([_candidate(1, slots=3, weight=9), _candidate(2, slots=2)], capacity)
    assert [c.id for c in admitted] == [2]
    assert blocked[1] == Block("pool_full", "p", 2, 4, 3)


def test_missing_pool_and_pool_too_small_never_wait_silently() -> None:
    capacity = Capacity(pool_size={"p": 1})
    _, blocked = admit([_candidate(1, pool="nope"), _candidate(2, slots=2)], capacity)
    assert blocked == {1: Block("pool_missing", "nope"), 2: Block("pool_too_small", "p", 0, 1, 2)}
    assert "create it (POST /api/v1/pools" in describe(blocked[1])
    assert "needs 2 slot(s) but pool 'p' has only 1" in describe(blocked[2])


def test_max_active_tasks_counts_active_tasks_of_the_dag() -> None:
    capacity = Capacity(pool_size={"p": 10}, dag_limit={"d": 2}, dag_taken={"d": 1})
    admitted, blocked = admit([_candidate(1), _candidate(2), _candidate(3, dag="other")], capacity)
    assert [c.id for c in admitted] == [1, 3]
    assert blocked == {2: Block("max_active_tasks", "d", 2, 2, 1)}
    words = describe(blocked[2], ["d.a (run r1)", "d.b (run r1)"])
    assert words == (
        "DAG 'd' has 2 of 2 tasks queued or running (max_active_tasks=2): "
        "d.a (run r1), d.b (run r1)"
    )


def test_pool_full_names_its_holders() -> None:
    block = Block("pool_full", "db", 4, 4, 1)
    labels = [f"etl.load (run r{i})" for i in range(4)]
    assert describe(block, labels) == (
        "pool 'db' is full: 4 of 4 slots taken by etl.load (run r0), etl.load (run r1), "
        "etl.load (run r2) and others; this task needs 1"
    )
