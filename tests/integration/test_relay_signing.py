"""The relay, not the database layer, signs attempt tokens: a task message rests in the outbox
without its token and leaves the relay as the ``TaskMessage`` workers have always parsed, signed
for its attempt. Other messages, and rows an older release wrote signed, pass unchanged."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from sqlalchemy import insert, select

from app.db.engine import Database
from app.db.models import Outbox
from app.db.outbox import QueuedAttempt, add_task_messages
from app.execution.tokens import AttemptTokens
from app.relay import OutboxRelay
from app.scheduler.wakeup import Wakeup
from weir.broker import Delivery
from weir.broker.memory import MemoryBroker
from weir.messages import TaskMessage

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TOKENS = AttemptTokens(b"a secret key of the test, 32 b.")
ATTEMPT = QueuedAttempt(41, 3, "nightly", "manual__1", "extract", "default")
SIGNED = TaskMessage(
    task_instance_id=41,
    attempt=3,
    dag_id="nightly",
    run_id="manual__1",
    task_id="extract",
    queue="default",
    token=TOKENS.issue(41, 3),
)


async def _published(database: Database) -> dict[str, bytes]:
    """What the relay publishes of the outbox, by message id."""
    broker = MemoryBroker()
    await broker.connect()
    relay = OutboxRelay(database, broker, Wakeup(), tokens=TOKENS, sweep_interval=1.0)
    sent = await relay.run_until_idle()
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def take(delivery: Delivery) -> None:
        received.put_nowait(delivery)
        await delivery.ack()

    await broker.subscribe(["default"], 10, take)
    bodies = {}
    async with asyncio.timeout(5):
        for _ in range(sent):
            delivery = await received.get()
            bodies[delivery.message_id] = delivery.body
    await broker.close()
    return bodies


async def test_a_task_message_is_stored_unsigned_and_published_signed(database: Database) -> None:
    async with database.sessions.begin() as session:
        await add_task_messages(session, [ATTEMPT], NOW)
    async with database.sessions() as session:
        stored = (await session.scalars(select(Outbox.body))).one()
    assert "token" not in json.loads(stored)

    published = await _published(database)

    assert published == {"41:3": SIGNED.model_dump_json().encode()}
    assert TOKENS.is_valid(TaskMessage.model_validate_json(published["41:3"]).token, 41, 3)


async def test_other_rows_pass_unchanged(database: Database) -> None:
    callback = b'{"kind":"dag_callback","callback":"on_success"}'
    older = SIGNED.model_dump_json().encode()  # written signed by an older release
    rows = [(callback, "dag_callback:7"), (older, "41:3"), (b"not json", "42:1")]
    async with database.sessions.begin() as session:
        await session.execute(
            insert(Outbox),
            [
                {"queue": "default", "message_id": i, "body": b, "priority": 0, "created_at": NOW}
                for b, i in rows
            ],
        )

    published = await _published(database)

    assert published == {"dag_callback:7": callback, "41:3": older, "42:1": b"not json"}
