"""Bad messages on a work queue, among a load: one that is not JSON, one of the wrong shape, and
a well-formed one for a task instance that does not exist. DESIGN.md invariant 7: each goes to the
dead-letter queue, where an operator can see it; no process dies of it, and the load around it
is clean."""

from __future__ import annotations

import json
import time
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from tests.chaos.cluster import Cluster
from tests.chaos.dags import LOAD_TASKS
from tests.chaos.load import DAG_ID, start_load
from tests.chaos.verdict import judge
from tests.support.stack import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

UNKNOWN_TASK = {
    "v": 1,
    "task_instance_id": 987654321,
    "attempt": 1,
    "dag_id": "no_such_dag",
    "run_id": "manual__no_such_run",
    "task_id": "no_such_task",
    "queue": "default",
    "token": "not-a-token",
}
BAD_MESSAGES = {
    "not_json": b"this is not a task message",
    "wrong_shape": json.dumps({"v": 1, "task_instance_id": "seven"}).encode(),
    "unknown_task": json.dumps(UNKNOWN_TASK).encode(),
}


async def test_bad_messages_go_to_the_dead_letter_queue(
    cluster: Cluster, figures: dict[str, Any]
) -> None:
    run_ids = await start_load(cluster, runs=10)
    connection = await aio_pika.connect(cluster.broker_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        seconds = {
            kind: await _dead_letter(cluster, channel, body) for kind, body in BAD_MESSAGES.items()
        }
    finally:
        await connection.close()
    await cluster.wait_for_runs(DAG_ID, run_ids, timeout=120)

    figures.update(await judge(cluster, DAG_ID, run_ids, LOAD_TASKS))
    figures.update(seconds_to_dead_letter=seconds)
    for process in [cluster.replicas[0].process, *cluster.workers]:
        assert process.process.poll() is None, f"{process.name} died:\n{process.output()[-3000:]}"


async def _dead_letter(cluster: Cluster, channel: AbstractChannel, body: bytes) -> float:
    """Publish ``body`` to the work queue; the seconds until it is in the dead-letter queue."""
    published = time.monotonic()
    await channel.default_exchange.publish(
        aio_pika.Message(body, message_id=f"chaos-bad-{published}"),
        routing_key=f"{cluster.namespace}.default",
        mandatory=True,  # with on_return_raises: an unroutable message fails the test
    )
    dead_letters = await channel.get_queue(f"{cluster.namespace}.dead-letter", ensure=False)

    async def arrived() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await dead_letters.get(no_ack=True, fail=False)

    dead = await wait_until(arrived, timeout=30)
    assert dead.body == body
    return round(time.monotonic() - published, 2)
