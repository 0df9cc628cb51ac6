"""Invariant 1: a report for an attempt that is no longer current is refused and changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from app.execution.tokens import AttemptTokens
from tests.support.stack import Stack, start_stack, wait_until

ONE_TASK = """
    from weir import dag, task

    @dag
    def single():
        @task(retries=1, retry_delay=0)
        def only() -> int:
            return 7

        only()

    single()
"""


async def _post(stack: Stack, ti_id: int, attempt: int, call: str, body: dict[str, Any]) -> Any:
    assert stack.settings.secret_key is not None
    tokens = AttemptTokens(stack.settings.secret_key.get_secret_value().encode())
    return await stack.client.post(
        f"/execution/v1/task-instances/{ti_id}/{call}",
        json={"attempt": attempt, **body},
        headers={"Authorization": f"Bearer {tokens.issue(ti_id, attempt)}"},
    )


async def _task_instance_id(stack: Stack, run_id: str) -> int:
    from sqlalchemy import select

    from app.db.models import TaskInstance

    async with stack.database.sessions() as session:
        ti_id = await session.scalar(select(TaskInstance.id).where(TaskInstance.run_id == run_id))
    assert ti_id is not None
    return ti_id


async def test_stale_reports_get_409_and_change_nothing(stack: Stack) -> None:
    stack.write_dag("single.py", ONE_TASK)
    await stack.wait_for_dag("single")
    run_id = await stack.trigger("single")
    assert await stack.wait_for_run("single", run_id) == "success"
    ti_id = await _task_instance_id(stack, run_id)
    before = (await stack.task_instances("single", run_id))["only"]

    refused = [
        await _post(stack, ti_id, 1, "finish", {"state": "failed", "error": "late"}),
        await _post(stack, ti_id, 1, "claim", {"worker": "intruder:1"}),
        await _post(stack, ti_id, 1, "heartbeat", {}),
        await _post(stack, ti_id, 1, "logs", {"data": "late line\n"}),
        await _post(stack, ti_id, 2, "finish", {"state": "success", "result": 0}),
    ]
    for response in refused:
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert (await stack.task_instances("single", run_id))["only"] == before
    assert "late line" not in await stack.logs("single", run_id, "only")


async def test_a_token_for_another_attempt_is_refused(stack: Stack) -> None:
    stack.write_dag("single.py", ONE_TASK)
    await stack.wait_for_dag("single")
    run_id = await stack.trigger("single")
    assert await stack.wait_for_run("single", run_id) == "success"
    ti_id = await _task_instance_id(stack, run_id)
    assert stack.settings.secret_key is not None
    tokens = AttemptTokens(stack.settings.secret_key.get_secret_value().encode())
    response = await stack.client.post(
        f"/execution/v1/task-instances/{ti_id}/finish",
        json={"attempt": 1, "state": "failed"},
        headers={"Authorization": f"Bearer {tokens.issue(ti_id + 1, 1)}"},
    )
    assert response.status_code == 401
    assert (await stack.task_instances("single", run_id))["only"]["state"] == "success"


UNSERVED = """
    from weir import dag, task

    @dag
    def unserved():
        @task(queue="nobody-serves-this")
        def waits() -> int:
            return 1

        waits()

    unserved()
"""


async def test_only_one_claim_of_an_attempt_wins(stack: Stack) -> None:
    """Invariant 2: the second claim of an attempt is refused; the winner may repeat its own."""
    stack.write_dag("unserved.py", UNSERVED)
    await stack.wait_for_dag("unserved")
    run_id = await stack.trigger("unserved")
    ti_id = await _task_instance_id(stack, run_id)

    async def queued() -> bool:
        return (await stack.task_instances("unserved", run_id))["waits"]["state"] == "queued"

    from tests.support.stack import wait_until

    await wait_until(queued)
    first = await _post(stack, ti_id, 1, "claim", {"worker": "host-a:1"})
    assert first.status_code == 200, first.text
    assert first.json()["task_id"] == "waits"
    again = await _post(stack, ti_id, 1, "claim", {"worker": "host-a:1"})
    assert again.status_code == 200, again.text
    rival = await _post(stack, ti_id, 1, "claim", {"worker": "host-b:2"})
    assert rival.status_code == 409
    ti = (await stack.task_instances("unserved", run_id))["waits"]
    assert (ti["state"], ti["worker"], ti["attempt"]) == ("running", "host-a:1", 1)
    done = await _post(stack, ti_id, 1, "finish", {"state": "success", "result": 5})
    assert done.status_code == 200 and done.json()["state"] == "success"
    assert await stack.wait_for_run("unserved", run_id) == "success"


WAITS_FOR_FILE = """
    import asyncio
    from pathlib import Path

    from weir import dag, task

    GO = Path(__file__).parent.parent / "go"

    @dag
    def held():
        @task
        async def hold() -> int:
            while not GO.exists():
                await asyncio.sleep(0.05)
            return 1

        hold()

    held()
"""


async def test_a_batched_heartbeat_fences_each_beat_on_its_own(stack: Stack) -> None:
    from datetime import datetime

    from sqlalchemy import select

    from app.db.models import TaskInstance

    stack.write_dag("held.py", WAITS_FOR_FILE)
    await stack.wait_for_dag("held")
    run_id = await stack.trigger("held")

    async def running() -> bool:
        return (await stack.task_instances("held", run_id))["hold"]["state"] == "running"

    await wait_until(running)
    ti_id = await _task_instance_id(stack, run_id)
    assert stack.settings.secret_key is not None
    tokens = AttemptTokens(stack.settings.secret_key.get_secret_value().encode())

    async def lease() -> datetime | None:
        async with stack.database.sessions() as session:
            statement = select(TaskInstance.lease_expires_at).where(TaskInstance.id == ti_id)
            return await session.scalar(statement)

    before = await lease()
    response = await stack.client.post(
        "/execution/v1/heartbeats",
        json={
            "beats": [
                {"task_instance_id": ti_id, "attempt": 1, "token": tokens.issue(ti_id, 1)},
                {"task_instance_id": ti_id + 1, "attempt": 1, "token": tokens.issue(ti_id, 1)},
                {"task_instance_id": ti_id + 2, "attempt": 3, "token": tokens.issue(ti_id + 2, 3)},
            ]
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["renewed"] == [ti_id]
    assert body["refused"] == [ti_id + 1, ti_id + 2]  # a forged token; no such attempt
    after = await lease()
    assert before is not None and after is not None and after > before
    (stack.dags_folder.parent / "go").touch()
    assert await stack.wait_for_run("held", run_id) == "success"


LEDGER_HELD = """
    import asyncio
    from pathlib import Path

    from weir import dag, task

    HERE = Path(__file__).parent.parent

    @dag
    def counted():
        @task
        async def hold() -> int:
            with (HERE / "starts").open("a") as out:
                out.write("start\\n")
            while not (HERE / "go").exists():
                await asyncio.sleep(0.05)
            return 1

        hold()

    counted()
"""


@pytest.mark.postgres
async def test_a_duplicate_message_for_an_attempt_running_here_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay publishes again when it could not delete its outbox row; a copy reaching the
    worker that runs the attempt must not start it a second time (its claim would be its own)."""
    from weir.broker import create_broker
    from weir.broker.base import OutgoingMessage
    from weir.messages import TaskMessage

    caplog.set_level(logging.INFO, logger="workers.attempt")
    async with start_stack("postgres", tmp_path) as stack:
        stack.write_dag("counted.py", LEDGER_HELD)
        await stack.wait_for_dag("counted")
        run_id = await stack.trigger("counted")

        async def running() -> bool:
            return (await stack.task_instances("counted", run_id))["hold"]["state"] == "running"

        await wait_until(running)
        ti_id = await _task_instance_id(stack, run_id)
        assert stack.settings.secret_key is not None
        tokens = AttemptTokens(stack.settings.secret_key.get_secret_value().encode())
        copy = TaskMessage(
            task_instance_id=ti_id,
            attempt=1,
            dag_id="counted",
            run_id=run_id,
            task_id="hold",
            queue="default",
            token=tokens.issue(ti_id, 1),
        )
        broker = create_broker(stack.settings)
        await broker.connect()
        try:
            body = copy.model_dump_json().encode()
            await broker.publish([OutgoingMessage("default", body, "duplicate")])
            await wait_until(lambda: _logged(caplog, "dropping a duplicate message"))
        finally:
            await broker.close()
        (tmp_path / "go").touch()
        assert await stack.wait_for_run("counted", run_id) == "success"
    assert (tmp_path / "starts").read_text() == "start\n"


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text
