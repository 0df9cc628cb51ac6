"""The in-process broker of ``weir standalone``: RabbitMQ's delivery semantics on asyncio.

It mirrors ``RabbitMQBroker`` on purpose (a behaviour that differs between the two is a bug):
at-least-once delivery, per-subscription prefetch, nack returns a message to the front of its
queue marked redelivered, dead-lettered messages are kept in ``dead_letters``, and ``close()``
returns every unsettled message. Queues are deques rather than ``asyncio.Queue`` because a nack
must put a message back at the front; dispatch runs synchronously whenever a message or a
prefetch slot becomes available, so nothing polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from weir.broker.base import DeliveryHandler, OutgoingMessage, Subscription, run_handler
from weir.errors import BrokerError

__all__ = ["MemoryBroker"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Queued:
    message: OutgoingMessage
    redelivered: bool = False


class _MemoryDelivery:
    """One handed-out message; settling it frees a prefetch slot of its subscription."""

    def __init__(self, subscription: _MemorySubscription, queued: _Queued) -> None:
        self.body = queued.message.body
        self.queue = queued.message.queue
        self.message_id = queued.message.message_id
        self.redelivered = queued.redelivered  # a copy: a later nack marks the queued message
        self.is_settled = False
        self._is_returned = False
        self._subscription = subscription
        self._queued = queued

    async def ack(self) -> None:
        if self._settle("ack"):
            self._subscription.broker._dispatch()

    async def nack(self) -> None:
        if self._settle("nack"):
            self._subscription.broker._requeue(self._queued)

    async def dead_letter(self) -> None:
        if self._settle("dead_letter"):
            self._subscription.broker.dead_letters.append(self._queued.message)
            self._subscription.broker._dispatch()

    def return_to_queue(self) -> None:
        """Give the message back because its subscription is closing (like a closed channel)."""
        self._is_returned = True
        self._subscription.unsettled.pop(self, None)
        self._subscription.broker._requeue(self._queued)

    def _settle(self, action: str) -> bool:
        """Mark settled; False when ``close()`` already returned the message (as RabbitMQ would)."""
        if self._is_returned:
            logger.warning(
                "Cannot %s message %s from queue %r: the broker was closed and requeued it",
                action,
                self.message_id,
                self.queue,
            )
            return False
        if self.is_settled:
            raise RuntimeError(f"Message {self.message_id} was already settled; settle it once")
        self.is_settled = True
        self._subscription.unsettled.pop(self, None)
        return True


class _MemorySubscription:
    """A consumer of some queues with at most ``prefetch`` unsettled deliveries."""

    def __init__(
        self, broker: MemoryBroker, queues: Sequence[str], prefetch: int, handler: DeliveryHandler
    ) -> None:
        self.broker = broker
        self.queues = deque(queues)
        self.prefetch = prefetch
        # A dict keeps delivery order, so that close() can return messages in their order.
        self.unsettled: dict[_MemoryDelivery, None] = {}
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self._is_cancelled = False

    @property
    def has_capacity(self) -> bool:
        return len(self.unsettled) < self.prefetch

    def deliver(self, queued: _Queued) -> None:
        delivery = _MemoryDelivery(self, queued)
        self.unsettled[delivery] = None
        task = asyncio.get_running_loop().create_task(self._handle(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._on_handler_done)

    async def cancel(self) -> None:
        self._is_cancelled = True
        self.broker._unsubscribe(self)
        self._forget_if_drained()

    async def close(self) -> None:
        """Stop handlers still running and return what they had not settled."""
        self._is_cancelled = True
        self.broker._unsubscribe(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for delivery in reversed(list(self.unsettled)):
            delivery.return_to_queue()

    def _on_handler_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._forget_if_drained()

    def _forget_if_drained(self) -> None:
        """Let the broker drop a cancelled subscription once nothing of it is in flight."""
        if self._is_cancelled and not self._tasks:
            self.broker._subscriptions.discard(self)

    async def _handle(self, delivery: _MemoryDelivery) -> None:
        """Run the handler; its errors are logged, and what it leaves unsettled goes back."""
        await run_handler(self._handler, delivery)


class MemoryBroker:
    """``Broker`` on in-process queues; they live as long as this object (close and reconnect
    keeps them, like a RabbitMQ server outliving its connections)."""

    def __init__(self) -> None:
        self.dead_letters: list[OutgoingMessage] = []
        self._queues: dict[str, deque[_Queued]] = {}
        self._subscribers: deque[_MemorySubscription] = deque()
        self._subscriptions: set[_MemorySubscription] = set()
        self._is_open = False

    async def connect(self) -> None:
        self._is_open = True

    async def close(self) -> None:
        self._is_open = False
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        for subscription in subscriptions:
            await subscription.close()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Enqueue at once. ``priority`` is ignored, as ``RabbitMQBroker`` ignores it."""
        self._require_open()
        for message in messages:
            self._queue(message.queue).append(_Queued(message))
        self._dispatch()

    async def subscribe(
        self, queues: Sequence[str], prefetch: int, handler: DeliveryHandler
    ) -> Subscription:
        self._require_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        subscription = _MemorySubscription(self, queues, prefetch, handler)
        self._subscribers.append(subscription)
        self._subscriptions.add(subscription)
        self._dispatch()
        return subscription

    async def is_healthy(self) -> bool:
        return self._is_open

    async def consumer_count(self, queue: str) -> int | None:
        return sum(1 for subscription in self._subscribers if queue in subscription.queues)

    def queued_count(self, queue: str) -> int:
        """Messages waiting in ``queue``, not counting those handed out (for tests)."""
        return len(self._queues.get(queue, ()))

    def _require_open(self) -> None:
        if not self._is_open:
            raise BrokerError("The in-process broker is not connected: call connect() first.")

    def _queue(self, name: str) -> deque[_Queued]:
        return self._queues.setdefault(name, deque())

    def _requeue(self, queued: _Queued) -> None:
        queued.redelivered = True
        self._queue(queued.message.queue).appendleft(queued)
        self._dispatch()

    def _unsubscribe(self, subscription: _MemorySubscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def _dispatch(self) -> None:
        """Hand waiting messages to subscriptions with free prefetch, round-robin between them."""
        idle = 0
        while idle < len(self._subscribers):
            subscription = self._subscribers[0]
            self._subscribers.rotate(-1)
            queued = self._take(subscription)
            if queued is None:
                idle += 1
            else:
                idle = 0
                subscription.deliver(queued)

    def _take(self, subscription: _MemorySubscription) -> _Queued | None:
        if not subscription.has_capacity:
            return None
        for _ in range(len(subscription.queues)):
            # Rotate so that one busy queue cannot starve the subscription's other queues.
            name = subscription.queues[0]
            subscription.queues.rotate(-1)
            waiting = self._queues.get(name)
            if waiting:
                return waiting.popleft()
        return None
