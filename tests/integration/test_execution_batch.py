"""``POST /execution/v1/batch``: claims, reports and log text in one request and one transaction,
each item authorised, fenced and answered on its own (invariants 1, 2 and 6), on both backends.

No worker runs here: the test plays the worker, so it decides what each batch holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import AttemptLog, TaskAttempt, TaskInstance, XCom
from app.execution.tokens import AttemptTokens
from tests.support.stack import Stack, start_stack, wait_until

THREE = """
    from weir import dag, task

    @dag(max_active_tasks=10)
    def three():
        @task
        def a() -> int:
            return 1

        @task
        def b() -> int:
            return 2

        @task
        def c() -> int:
            return 3

        a(); b(); c()

    three()
"""


@pytest.fixture
async def idle_stack(backend: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(backend, tmp_path, workers=0) as running:
        yield running


def _tokens(stack: Stack) -> AttemptTokens:
    assert stack.settings.secret_key is not None
    return AttemptTokens(stack.settings.secret_key.get_secret_value().encode())


async def _queued(stack: Stack) -> dict[str, int]:
    """Trigger the DAG and wait until its three tasks are queued: task id -> instance id."""
    stack.write_dag("three.py", THREE)
    await stack.wait_for_dag("three")
    run_id = await stack.trigger("three")

    async def all_queued() -> dict[str, int] | None:
        async with stack.database.sessions() as session:
            rows = (
                await session.execute(
                    select(TaskInstance.task_id, TaskInstance.id, TaskInstance.state).where(
                        TaskInstance.run_id == run_id
                    )
                )
            ).all()
        if len(rows) == 3 and all(row.state == "queued" for row in rows):
            return {row.task_id: row.id for row in rows}
        return None

    found: dict[str, int] = await wait_until(all_queued)
    return found


async def _batch(stack: Stack, *items: dict[str, Any]) -> list[dict[str, Any]]:
    response = await stack.client.post("/execution/v1/batch", json={"items": list(items)})
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["answers"]
    assert len(answers) == len(items)
    return answers


def _claim(tokens: AttemptTokens, ti_id: int, worker: str = "w:1") -> dict[str, Any]:
    token = tokens.issue(ti_id, 1)
    return {
        "kind": "claim",
        "task_instance_id": ti_id,
        "attempt": 1,
        "worker": worker,
        "token": token,
    }


async def test_claims_in_one_batch_are_answered_each_on_its_own(idle_stack: Stack) -> None:
    stack, tokens = idle_stack, _tokens(idle_stack)
    ids = await _queued(stack)
    forged = {**_claim(tokens, ids["c"]), "token": tokens.issue(ids["c"], 2)}

    answers = await _batch(
        stack,
        _claim(tokens, ids["a"]),
        _claim(tokens, ids["b"]),
        forged,  # a token for another attempt: 401
        _claim(tokens, 999_999),  # no such task instance: 404
        _claim(tokens, ids["a"]),  # the same worker asking again: its own claim, same answer
    )

    assert [a["status"] for a in answers] == [200, 200, 401, 404, 200]
    assert answers[0]["claim"]["task_id"] == "a" and answers[1]["claim"]["task_id"] == "b"
    assert answers[4]["claim"] == answers[0]["claim"]
    # Another worker's claim of a running attempt is refused, one of a queued one wins.
    again = await _batch(stack, _claim(tokens, ids["a"], "w:2"), _claim(tokens, ids["c"], "w:2"))
    assert [a["status"] for a in again] == [409, 200]
    async with stack.database.sessions() as session:
        rows = await session.execute(select(TaskInstance.id, TaskInstance.worker))
        states = {row.id: row.worker for row in rows}
        attempts = (await session.scalars(select(TaskAttempt.task_instance_id))).all()
    assert (states[ids["a"]], states[ids["b"]], states[ids["c"]]) == ("w:1", "w:1", "w:2")
    assert sorted(attempts) == sorted(ids.values()), "one attempt record per won claim"


async def test_reports_and_log_text_in_one_batch(idle_stack: Stack) -> None:
    stack, tokens = idle_stack, _tokens(idle_stack)
    ids = await _queued(stack)
    await _batch(stack, *(_claim(tokens, ti_id) for ti_id in ids.values()))

    def item(kind: str, name: str, **body: Any) -> dict[str, Any]:
        ti_id = ids[name]
        return {
            "kind": kind,
            "task_instance_id": ti_id,
            "attempt": 1,
            "token": tokens.issue(ti_id, 1),
            **body,
        }

    answers = await _batch(
        stack,
        item("log", "a", data="a says hi\n"),
        item("finish", "a", state="success", result={"n": 1}, log="a done\n"),
        item("finish", "b", state="failed", error="Boom"),
        item("log", "c", data="c runs\n"),
    )
    assert [a["status"] for a in answers] == [200, 200, 200, 200]
    assert answers[1]["finish"] == {"state": "success"}
    assert answers[2]["finish"] == {"state": "failed"}

    stale = await _batch(
        stack,
        item("finish", "a", state="success", result={"n": 2}),  # reported already: 409
        item("log", "b", data="too late\n"),  # b is no longer running: 409
        item("finish", "c", state="success", result=None),
    )
    assert [a["status"] for a in stale] == [409, 409, 200]
    async with stack.database.sessions() as session:
        rows = await session.execute(select(TaskInstance.id, TaskInstance.state))
        states = {row.id: row.state for row in rows}
        values = await session.execute(select(XCom.task_instance_id, XCom.value))
        xcoms = {row.task_instance_id: row.value for row in values}
        texts = await session.execute(
            select(AttemptLog.task_instance_id, AttemptLog.data).order_by(AttemptLog.id)
        )
        logs: dict[int, list[str]] = {}
        for text in texts:
            logs.setdefault(text.task_instance_id, []).append(text.data)
    assert (states[ids["a"]], states[ids["b"]], states[ids["c"]]) == (
        "success",
        "failed",
        "success",
    )
    assert xcoms == {ids["a"]: {"n": 1}, ids["c"]: None}
    assert logs == {ids["a"]: ["a says hi\n", "a done\n"], ids["c"]: ["c runs\n"]}


async def test_a_malformed_item_is_refused_with_a_problem(idle_stack: Stack) -> None:
    response = await idle_stack.client.post(
        "/execution/v1/batch", json={"items": [{"kind": "explode", "task_instance_id": 1}]}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    empty = await idle_stack.client.post("/execution/v1/batch", json={"items": []})
    assert empty.status_code == 422
