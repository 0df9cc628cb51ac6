"""The ``Broker`` seam: how task messages travel from the outbox relay to workers.

Two implementations stand behind it: RabbitMQ (``rabbitmq.py``, production) and an in-process
asyncio queue (``memory.py``, standalone). Everything above this seam is the same code.

Delivery semantics are at-least-once: a message is redelivered until it is acked; a nacked message
goes back to its queue; a dead-lettered one goes to the dead-letter queue and is never redelivered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Broker",
    "Delivery",
    "DeliveryHandler",
    "OutgoingMessage",
    "Subscription",
    "TrackedDelivery",
    "run_handler",
]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    queue: str
    """The Weir queue name (``default``, ``gpu``, …), not the broker's prefixed name."""
    body: bytes
    message_id: str
    priority: int = 0


class Delivery(Protocol):
    """One received message. Exactly one of ``ack``, ``nack`` or ``dead_letter`` settles it."""

    @property
    def body(self) -> bytes: ...

    @property
    def queue(self) -> str: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...

    async def nack(self) -> None:
        """Return the message to its queue for another consumer."""
        ...

    async def dead_letter(self) -> None:
        """Move the message to the dead-letter queue (it could not be parsed)."""
        ...


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop receiving new messages; unsettled ones stay with the caller to settle."""
        ...


class Broker(Protocol):
    async def connect(self) -> None:
        """Connect and declare what publishing needs (exchanges, dead-letter queue)."""
        ...

    async def close(self) -> None:
        """Close; messages received but not settled go back to their queues."""
        ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish a batch; returns only once the broker has confirmed every message.

        Raises ``weir.errors.BrokerError`` if any is not confirmed: the caller keeps its outbox
        rows and tries again.
        """
        ...

    async def subscribe(
        self, queues: Sequence[str], prefetch: int, handler: DeliveryHandler
    ) -> Subscription:
        """Deliver messages from ``queues`` to ``handler``, at most ``prefetch`` unsettled at once.

        ``handler`` is awaited for each message in a task of its own and must settle it.
        """
        ...

    async def is_healthy(self) -> bool: ...

    async def consumer_count(self, queue: str) -> int | None:
        """How many consumers serve ``queue`` now; None when the broker cannot tell.

        For "why is it not running?": zero means no worker serves the queue, or every worker that
        does is busy (a full worker cancels its subscription until a slot frees).
        """
        ...


class TrackedDelivery(Delivery, Protocol):
    """A delivery that knows whether it was settled (what both implementations hand out)."""

    @property
    def message_id(self) -> str: ...

    @property
    def is_settled(self) -> bool: ...


async def run_handler(handler: DeliveryHandler, delivery: TrackedDelivery) -> None:
    """Run ``handler``; log its errors, and nack what it left unsettled, so nothing is stranded."""
    log = logging.getLogger("weir.broker")
    try:
        await handler(delivery)
    except Exception:
        log.exception("Handler failed on message %s from queue %r", delivery.message_id,
                      delivery.queue)  # fmt: skip
    if not delivery.is_settled:
        log.warning("Handler returned without settling message %s from queue %r; nacking it",
                    delivery.message_id, delivery.queue)  # fmt: skip
        await delivery.nack()
