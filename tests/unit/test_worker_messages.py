"""What a worker's queue carries, parsed once: task messages as the outbox relay writes them (no
``kind``, as workers of an older release expect), DAG callbacks by their ``kind``, and nothing
else."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from weir.messages import DagCallbackMessage, TaskMessage, parse_worker_message

TASK = TaskMessage(
    task_instance_id=7,
    attempt=2,
    dag_id="etl",
    run_id="manual__1",
    task_id="load",
    queue="default",
    token="tok",
)
CALLBACK = DagCallbackMessage(
    callback="on_failure",
    dag_id="etl",
    run_id="manual__1",
    fileloc="etl.py",
    file_hash="ab" * 32,
    logical_date=datetime(2026, 1, 2, tzinfo=UTC),
    data_interval_start=None,
    data_interval_end=None,
    conf={"a": 1},
    params={},
    error="load failed",
)


def test_a_task_message_as_the_relay_writes_it_parses_as_a_task_message() -> None:
    body = TASK.model_dump_json().encode()  # what app/db/outbox.py stores and publishes

    assert b'"kind"' not in body
    assert parse_worker_message(body) == TASK


def test_a_dag_callback_message_parses_as_one() -> None:
    assert parse_worker_message(CALLBACK.model_dump_json().encode()) == CALLBACK


@pytest.mark.parametrize(
    "body",
    [
        b"this is not a task message",
        b'{"v": 1, "task_instance_id": "seven"}',
        b'{"kind": "something_else", "dag_id": "etl"}',
        b'{"kind": 3}',
        b"[]",
        # A task message with a tag: workers of an older release would refuse it, so do we.
        TASK.model_dump_json()[:-1].encode() + b', "kind": "task"}',
        # A DAG callback missing a field is not taken for a task message either.
        CALLBACK.model_dump_json(exclude={"fileloc"}).encode(),
    ],
)
def test_anything_else_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_worker_message(body)
