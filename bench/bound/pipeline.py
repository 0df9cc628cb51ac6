"""The minimal core: a scheduler side that queues ready tasks and publishes them, and a worker side
that consumes, claims (running), runs a no-op, finishes (success, queueing what became ready) and
acks. Every step is batched over whatever is ready together, and every task goes through both
PostgreSQL and RabbitMQ, as in Weir; what is left out is everything that is not on that path.

Both sides share one process and one event loop, each with its own PostgreSQL connection (asyncpg
prepares and caches each statement on first use) and its own AMQP channel.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import aiormq.abc
import asyncpg
from aio_pika.abc import AbstractConnection
from aiormq import spec
from aiormq.abc import DeliveredMessage

from bench.bound.statements import (
    CREATE_RUN,
    LINK_CHAIN,
    MARK_RUNNING,
    MARK_SUCCESS_AND_QUEUE_DOWNSTREAM,
    QUEUE_ROOTS,
    TRIGGER,
)

__all__ = ["PREFETCH", "Pipeline", "Tally", "open_pipeline"]

PREFETCH = 200
"""Deliveries the worker may hold unacknowledged: the most one batch can grow to."""

PERSISTENT = 2
"""AMQP delivery mode 2: RabbitMQ writes the message to disk before it confirms it."""

Attempt = tuple[int, int]
"""(task id, attempt number): what a message carries and what every compare-and-set checks."""


class Tally:
    """What the worker side tells the measurements: when each task's claim committed, and how
    many tasks of each run have succeeded (times are ``time.perf_counter()``)."""

    def __init__(self) -> None:
        self.running_at: dict[int, float] = {}
        self._successes: Counter[int] = Counter()
        self._last_success_at: dict[int, float] = {}
        self._waiters: dict[int, tuple[int, asyncio.Future[float]]] = {}
        self._running_waiters: dict[int, asyncio.Future[float]] = {}

    def record_running(self, task_ids: Iterable[int], at: float) -> None:
        for task_id in task_ids:
            self.running_at[task_id] = at
            waiter = self._running_waiters.pop(task_id, None)
            if waiter is not None:
                waiter.set_result(at)

    def record_successes(self, run_ids: Iterable[int], at: float) -> None:
        counted = Counter(run_ids)
        self._successes.update(counted)
        for run_id in counted:
            self._last_success_at[run_id] = at
            waiter = self._waiters.get(run_id)
            if waiter is not None and self._successes[run_id] >= waiter[0]:
                del self._waiters[run_id]
                waiter[1].set_result(at)

    async def until_done(self, run_id: int, tasks: int) -> float:
        """When the last of the run's ``tasks`` succeeded (waits for it if it has not yet)."""
        if self._successes[run_id] >= tasks:
            return self._last_success_at[run_id]
        future = asyncio.get_running_loop().create_future()
        self._waiters[run_id] = (tasks, future)
        return await future

    async def until_running(self, task_id: int) -> float:
        """When the task's claim committed (waits for it if it has not yet)."""
        if task_id in self.running_at:
            return self.running_at[task_id]
        future = asyncio.get_running_loop().create_future()
        self._running_waiters[task_id] = future
        return await future


class Publisher:
    """Publishes attempts persistent, with publisher confirms, all of a batch at once."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, queue: str) -> None:
        self._channel = channel
        self._queue = queue

    async def publish(self, attempts: Sequence[Attempt]) -> None:
        """Return once RabbitMQ has confirmed every message of the batch."""
        confirmations = await asyncio.gather(
            *(
                self._channel.basic_publish(
                    f"{task_id} {attempt}".encode(),
                    routing_key=self._queue,
                    properties=spec.Basic.Properties(
                        delivery_mode=PERSISTENT, message_id=f"{task_id}.{attempt}"
                    ),
                    mandatory=True,
                )
                for task_id, attempt in attempts
            )
        )
        refused = [c for c in confirmations if not isinstance(c, spec.Basic.Ack)]
        if refused:
            raise RuntimeError(f"RabbitMQ refused {len(refused)} of {len(attempts)}: {refused[0]}")


def _attempt(message: DeliveredMessage) -> Attempt:
    task_id, attempt = message.body.split()
    return int(task_id), int(attempt)


async def run_noop() -> None:
    """The task: an async no-op."""


class Worker:
    """Takes every delivery that has arrived as one batch: claim, run, finish, publish what the
    finish queued, ack. Deliveries keep arriving while a batch is in the database, so batches
    grow with the load and stay single messages when there is none (a chain's hops)."""

    def __init__(
        self,
        db: asyncpg.Connection,
        channel: aiormq.abc.AbstractChannel,
        publisher: Publisher,
        tally: Tally,
    ) -> None:
        self._db = db
        self._channel = channel
        self._publisher = publisher
        self._tally = tally
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

    async def on_message(self, message: DeliveredMessage) -> None:
        self._inbox.put_nowait(message)

    async def run(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self._handle(batch)

    async def _handle(self, batch: list[DeliveredMessage]) -> None:
        ids, attempts = zip(*map(_attempt, batch), strict=True)
        claimed = await self._db.fetch(MARK_RUNNING, ids, attempts)
        self._tally.record_running((row["id"] for row in claimed), time.perf_counter())
        # Each claimed task runs as its own asyncio task, as a worker runs its attempts.
        await asyncio.gather(*(run_noop() for _ in claimed))
        rows = await self._db.fetch(
            MARK_SUCCESS_AND_QUEUE_DOWNSTREAM,
            [row["id"] for row in claimed],
            [row["attempt"] for row in claimed],
        )
        finished_at = time.perf_counter()
        queued = [(row["id"], row["attempt"]) for row in rows if not row["is_done"]]
        if queued:
            await self._publisher.publish(queued)
        self._tally.record_successes((row["run_id"] for row in rows if row["is_done"]), finished_at)
        # One ack for the batch: deliveries on a channel are numbered in order and every earlier
        # batch is acked, so "up to this one" is exactly this batch. A delivery whose claim lost
        # is acked too: its attempt is someone else's or over.
        await self._channel.basic_ack(batch[-1].delivery_tag, multiple=True)


class Pipeline:
    """The scheduler side: creates runs, queues what is ready, publishes it."""

    def __init__(self, db: asyncpg.Connection, publisher: Publisher, tally: Tally) -> None:
        self.tally = tally
        self._db = db
        self._publisher = publisher

    async def create_run(self, tasks: int, *, is_chain: bool = False) -> int:
        """A run of ``tasks`` unqueued tasks (a chain: each waits for the one before)."""
        async with self._db.transaction():
            run_id: int = await self._db.fetchval(CREATE_RUN, tasks)
            if is_chain:
                await self._db.execute(LINK_CHAIN, run_id)
        return run_id

    async def queue_roots(self, run_id: int) -> int:
        """Queue and publish every task of the run that waits for nothing; how many there were."""
        rows = await self._db.fetch(QUEUE_ROOTS, run_id)
        await self._publisher.publish([(row["id"], row["attempt"]) for row in rows])
        return len(rows)

    async def trigger(self) -> tuple[int, int]:
        """Insert a one-task run with its task queued, publish it; the run's and task's ids."""
        row = await self._db.fetchrow(TRIGGER)
        await self._publisher.publish([(row["id"], row["attempt"])])
        return row["run_id"], row["id"]

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Read back what the run wrote (after a measurement)."""
        rows: list[asyncpg.Record] = await self._db.fetch(query, *args)
        return rows


@asynccontextmanager
async def open_pipeline(
    dsn: str, broker: AbstractConnection, queue: str, prefetch: int = PREFETCH
) -> AsyncIterator[Pipeline]:
    """The scheduler side, with the worker side consuming ``queue`` until the block ends."""
    scheduler_db = await asyncpg.connect(dsn)
    worker_db = await asyncpg.connect(dsn)
    try:
        async with (
            broker.channel(publisher_confirms=True, on_return_raises=True) as publishing,
            broker.channel(publisher_confirms=False) as consuming,
        ):
            await consuming.set_qos(prefetch_count=prefetch)
            # aio-pika's own channel below its Channel object: the same protocol, without a
            # Message object and a second task per message (a third of the CPU per task).
            publisher = Publisher(await publishing.get_underlay_channel(), queue)
            channel = await consuming.get_underlay_channel()
            tally = Tally()
            worker = Worker(worker_db, channel, publisher, tally)
            async with asyncio.TaskGroup() as group:
                working = group.create_task(worker.run())
                consumer = await channel.basic_consume(queue, worker.on_message)
                try:
                    yield Pipeline(scheduler_db, publisher, tally)
                finally:
                    await channel.basic_cancel(consumer.consumer_tag)
                    working.cancel()
    finally:
        await worker_db.close()
        await scheduler_db.close()
