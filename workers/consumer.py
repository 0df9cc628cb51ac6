"""Flow control: the worker holds no more messages than it has free slots.

The worker acks a message as soon as its claim is answered, so the broker's prefetch window
frees up while the attempt still runs and ``prefetch = concurrency`` alone would let a busy worker
hoard messages. The consumer therefore subscribes only while a slot is free, cancels the
subscription when the last slot is taken, nacks a message that arrives with no free slot, and
subscribes again when a slot frees. One loop owns the subscription and reconciles it with the free
slots each time they change; taking the last slot reconciles at once, before that attempt can
ack (and so widen the broker's window), and a lock keeps the two from racing.

The prefetch of a new subscription is the number of free slots at that moment, not the
concurrency: a larger window would be filled at once with messages that can only be nacked, and a
nacked message goes back to the front of its queue, so the broker may hand it straight back
until the cancellation lands.

Each taken message runs as a task of the worker's ``TaskGroup``. The broker's handler waits only
until that task has settled the message (the broker nacks what a returning handler left
unsettled), not for the attempt: the broker may cancel its handler tasks when it closes, and an
attempt's life is the worker's business.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any

from weir.broker import Broker, Delivery, Subscription
from weir.errors import BrokerError

__all__ = ["AttemptStarter", "Consumer"]

AttemptStarter = Callable[[Delivery], Coroutine[Any, Any, None]]

logger = logging.getLogger(__name__)

RESUBSCRIBE_DELAY = 1.0
"""Seconds between tries to subscribe while the broker's connection is being restored."""


class Consumer:
    """Feeds deliveries to ``handle``, one per free slot, until ``stop``."""

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        concurrency: int,
        handle: AttemptStarter,
    ) -> None:
        self._broker = broker
        self._queues = list(queues)
        self._handle = handle
        self._free = concurrency
        self._subscription: Subscription | None = None
        self._group: asyncio.TaskGroup | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._stopped = asyncio.Event()

    async def run(self, group: asyncio.TaskGroup) -> None:
        """Keep the subscription in step with the free slots; attempts run in ``group``."""
        self._group = group
        try:
            while True:
                self._changed.clear()
                async with self._lock:
                    reconciled = await self._try_reconcile()
                if self._stopping and self._subscription is None:
                    return
                if reconciled:
                    await self._changed.wait()
                else:  # the broker is reconnecting: try again shortly, or when slots change
                    with suppress(TimeoutError):
                        async with asyncio.timeout(RESUBSCRIBE_DELAY):
                            await self._changed.wait()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Take no more messages: the subscription is cancelled when this returns."""
        self._stopping = True
        self._changed.set()
        await self._stopped.wait()

    async def drain(self, grace: float) -> None:
        """Let running attempts finish within ``grace`` seconds, then cancel the rest."""
        if not self._running:
            return
        logger.info("Waiting up to %g s for %d running attempt(s)", grace, len(self._running))
        _, pending = await asyncio.wait(set(self._running), timeout=grace)
        if pending:
            logger.warning(
                "Cancelling %d attempt(s) still running after the grace period of %g s",
                len(pending),
                grace,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    async def _try_reconcile(self) -> bool:
        """Reconcile; a broker that cannot take the (un)subscription now (it is reconnecting
        after RabbitMQ restarted) is logged and tried again, never the end of the worker."""
        try:
            await self._reconcile()
        except BrokerError as exc:
            if self._stopping:  # nothing to take any more; the broker requeues what it holds
                self._subscription = None
                return True
            logger.warning("Could not (un)subscribe %s (%s); trying again", self._queues, exc)
            return False
        return True

    async def _reconcile(self) -> None:
        wanted = self._free > 0 and not self._stopping
        if wanted and self._subscription is None:
            self._subscription = await self._broker.subscribe(
                self._queues, self._free, self._on_delivery
            )
            logger.debug("Subscribed to %s (%d free slot(s))", self._queues, self._free)
        elif not wanted and self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.cancel()
            logger.debug("Unsubscribed from %s (no free slot, or stopping)", self._queues)

    async def _on_delivery(self, delivery: Delivery) -> None:
        """The broker's handler: take a slot and start the attempt, or give the message back."""
        if self._stopping or self._free == 0 or self._group is None:
            await self._give_back(delivery)
            return
        self._free -= 1
        if self._free == 0:
            try:
                await self._unsubscribe_now()
            except asyncio.CancelledError:  # the broker is closing: the message goes back
                self._release_slot()
                raise
        tracked = _TrackedDelivery(delivery)
        attempt = self._handle(tracked)
        try:
            task = self._group.create_task(attempt)
        except RuntimeError:  # the group is shutting down after a crash
            attempt.close()
            self._release_slot()
            await self._give_back(delivery)
            return
        self._running.add(task)
        task.add_done_callback(self._on_attempt_done)
        task.add_done_callback(lambda _: tracked.settled.set())
        await tracked.settled.wait()

    async def _unsubscribe_now(self) -> None:
        """The last slot was just taken: cancel the subscription before this attempt's ack can
        widen the broker's prefetch window."""
        try:
            async with self._lock:
                await self._reconcile()
        except Exception as exc:
            logger.warning("Could not cancel the subscription to %s (%s)", self._queues, exc)

    def _on_attempt_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._release_slot()

    def _release_slot(self) -> None:
        self._free += 1
        self._changed.set()

    async def _give_back(self, delivery: Delivery) -> None:
        try:
            await delivery.nack()
        except Exception as exc:
            logger.warning("Could not return a message to queue %s (%s)", delivery.queue, exc)


class _TrackedDelivery:
    """A delivery that tells when it has been settled."""

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self.settled = asyncio.Event()

    @property
    def body(self) -> bytes:
        return self._delivery.body

    @property
    def queue(self) -> str:
        return self._delivery.queue

    @property
    def redelivered(self) -> bool:
        return self._delivery.redelivered

    async def ack(self) -> None:
        try:
            await self._delivery.ack()
        finally:
            self.settled.set()

    async def nack(self) -> None:
        try:
            await self._delivery.nack()
        finally:
            self.settled.set()

    async def dead_letter(self) -> None:
        try:
            await self._delivery.dead_letter()
        finally:
            self.settled.set()
