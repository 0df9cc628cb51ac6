"""The production broker: RabbitMQ through aio-pika.

Each Weir queue is a durable quorum queue ``<namespace>.<queue>``, declared on first use.
Messages are persistent and published with publisher confirms on one channel; every
subscription has a channel of its own, so that its ``prefetch`` (``basic.qos``) is its own and
cancelling it cannot disturb publishing. Rejected messages dead-letter, at least once, through
the fanout exchange ``<namespace>.dlx`` into the quorum queue ``<namespace>.dead-letter``.

Message priority is ignored: quorum queues do not support ``x-max-priority`` (RabbitMQ 4 has only
two levels, high and normal), and ``MemoryBroker`` ignores it too, so both behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import ChannelNotFoundEntity
from pamqp.commands import Basic
from pamqp.common import Arguments

from weir.broker.base import DeliveryHandler, OutgoingMessage, Subscription, run_handler
from weir.errors import BrokerError

__all__ = ["RabbitMQBroker"]

logger = logging.getLogger(__name__)

DEAD_LETTER_QUEUE = "dead-letter"
"""The Weir name of the dead-letter queue: ``subscribe(["dead-letter"], ...)`` inspects it."""


class _RabbitDelivery:
    """One received message; settling it tells its subscription that a prefetch slot is free."""

    def __init__(
        self, subscription: _RabbitSubscription, queue: str, message: AbstractIncomingMessage
    ) -> None:
        self.body = message.body
        self.queue = queue
        self.message_id = message.message_id or ""
        self.redelivered = bool(message.redelivered)
        self.is_settled = False
        self._subscription = subscription
        self._message = message

    async def ack(self) -> None:
        await self._settle("ack", self._message.ack)

    async def nack(self) -> None:
        await self._settle("nack", partial(self._message.nack, requeue=True))

    async def dead_letter(self) -> None:
        # A reject without requeue routes the message to its queue's dead-letter exchange.
        await self._settle("dead_letter", partial(self._message.reject, requeue=False))

    async def _settle(self, action: str, send: Callable[[], Awaitable[None]]) -> None:
        if self.is_settled:
            raise RuntimeError(f"Message {self.message_id} was already settled; settle it once")
        self.is_settled = True
        try:
            await send()
        except CONNECTION_EXCEPTIONS as error:
            # The channel is gone, and with it the delivery: RabbitMQ has requeued the message.
            logger.warning(
                "Cannot %s message %s (%s); it is requeued", action, self.message_id, error
            )
        finally:
            self._subscription.settled(self)


class _RabbitSubscription:
    """Consumers on a channel of their own. After ``cancel()`` the channel stays open until every
    delivery handed out is settled: closing it earlier would requeue them under their handlers."""

    def __init__(
        self,
        channel: AbstractChannel,
        handler: DeliveryHandler,
        forget: Callable[[_RabbitSubscription], None],
    ) -> None:
        self._channel = channel
        self._handler = handler
        self._forget = forget
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._unsettled: set[_RabbitDelivery] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._is_cancelled = False  # no more deliveries to the handler
        self._is_draining = False  # consumers cancelled: close the channel once all are settled
        self._is_closing = False

    async def consume(self, queue: str, declared: AbstractQueue) -> None:
        tag = await declared.consume(partial(self._on_message, queue))
        self._consumers.append((declared, tag))

    async def cancel(self) -> None:
        if self._is_cancelled:
            return
        self._is_cancelled = True
        for declared, tag in self._consumers:
            try:
                await declared.cancel(tag)
            except CONNECTION_EXCEPTIONS as error:
                logger.warning("Could not cancel consumer %s: %s", tag, error)
        self._consumers.clear()
        self._is_draining = True
        if not self._unsettled:
            await self._close_channel()
        self._forget_if_drained()

    async def close(self) -> None:
        """Stop handlers still running; closing the connection then requeues what they held."""
        self._is_cancelled = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def settled(self, delivery: _RabbitDelivery) -> None:
        self._unsettled.discard(delivery)
        if self._is_draining and not self._unsettled:
            self._spawn(self._close_channel())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._forget_if_drained()

    def _forget_if_drained(self) -> None:
        if self._is_cancelled and not self._tasks and not self._unsettled:
            self._forget(self)

    async def _on_message(self, queue: str, message: AbstractIncomingMessage) -> None:
        if self._is_cancelled:
            # Sent before RabbitMQ saw our basic.cancel: give it straight back.
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):  # a closed channel requeues it too
                await message.nack(requeue=True)
            return
        delivery = _RabbitDelivery(self, queue, message)
        self._unsettled.add(delivery)
        # aiormq cancels its consumer-callback tasks when the channel closes; the handler must
        # outlive that (it may still settle after cancel()), so it runs in a task of ours.
        self._spawn(self._handle(delivery))

    async def _handle(self, delivery: _RabbitDelivery) -> None:
        """Run the handler; its errors are logged, and what it leaves unsettled goes back."""
        await run_handler(self._handler, delivery)

    async def _close_channel(self) -> None:
        if self._is_closing:
            return
        self._is_closing = True
        try:
            await self._channel.close()
        except CONNECTION_EXCEPTIONS as error:
            logger.warning("Could not close a subscription's channel: %s", error)


class RabbitMQBroker:
    """``Broker`` on RabbitMQ. One robust connection: aio-pika reconnects after a network
    failure and restores declarations, QoS and consumers; publishes in flight then fail with
    ``BrokerError`` and the outbox relay publishes them again."""

    def __init__(
        self,
        url: str,
        namespace: str = "weir",
        *,
        publish_timeout: float = 30.0,
        heartbeat: int | None = None,
    ) -> None:
        self._url = url
        # AMQP heartbeats let RabbitMQ drop a dead or frozen (SIGSTOPped) consumer within about
        # this many seconds and hand its unacknowledged messages to the others; a
        # ``heartbeat=`` in the URL wins.
        self._heartbeat = heartbeat if "heartbeat=" not in urlsplit(url).query else None
        self._namespace = namespace
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._declared: set[str] = set()
        self._subscriptions: set[_RabbitSubscription] = set()

    def queue_name(self, queue: str) -> str:
        """The RabbitMQ name of a Weir queue."""
        return f"{self._namespace}.{queue}"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self._namespace}.dlx"

    async def connect(self) -> None:
        if self._connection is not None:
            return
        where = urlsplit(self._url)
        try:
            if self._heartbeat is None:
                self._connection = await aio_pika.connect_robust(self._url)
            else:
                self._connection = await aio_pika.connect_robust(
                    self._url, heartbeat=self._heartbeat
                )
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._publish_channel = channel
            exchange = await channel.declare_exchange(
                self.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
            )
            dead_letters = await self._declare(channel, DEAD_LETTER_QUEUE)
            await dead_letters.bind(exchange)
        except CONNECTION_EXCEPTIONS as error:
            await self.close()
            raise BrokerError(
                f"Cannot connect to RabbitMQ at {where.hostname}:{where.port or 5672} ({error!r}): "
                "check WEIR_BROKER_URL and that RabbitMQ is running."
            ) from error
        self._declared.add(DEAD_LETTER_QUEUE)

    async def close(self) -> None:
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        for subscription in subscriptions:
            await subscription.close()
        connection, self._connection = self._connection, None
        self._publish_channel = None
        self._declared.clear()
        if connection is not None:
            await connection.close()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish concurrently on the confirming channel; fail if any is not confirmed."""
        _, channel = self._opened()
        try:
            # The timeout also bounds the wait for a robust connection that is reconnecting.
            async with asyncio.timeout(self._publish_timeout):
                for queue in sorted({message.queue for message in messages} - self._declared):
                    await self._declare(channel, queue)
                    self._declared.add(queue)
                results = await asyncio.gather(
                    *(self._publish_one(channel, message) for message in messages),
                    return_exceptions=True,
                )
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as error:
            self._declared.clear()
            raise BrokerError(
                f"RabbitMQ did not take a batch of {len(messages)} messages within "
                f"{self._publish_timeout} s ({error!r}); publish it again."
            ) from error
        failures = [
            (message, result)
            for message, result in zip(messages, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failures:
            # Declare again next time: an unroutable message means a queue has gone.
            self._declared.clear()
            message, failure = failures[0]
            raise BrokerError(
                f"RabbitMQ did not confirm {len(failures)} of {len(messages)} messages (first: "
                f"{message.message_id} to queue {message.queue!r}: {failure!r}); publish again."
            ) from failure

    async def subscribe(
        self, queues: Sequence[str], prefetch: int, handler: DeliveryHandler
    ) -> Subscription:
        connection, _ = self._opened()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        try:
            channel = await connection.channel(publisher_confirms=False)
        except CONNECTION_EXCEPTIONS as error:
            raise BrokerError(f"Cannot open a channel on RabbitMQ: {error!r}") from error
        subscription = _RabbitSubscription(channel, handler, self._forget)
        self._subscriptions.add(subscription)
        try:
            await channel.set_qos(prefetch_count=prefetch)
            for queue in queues:
                await subscription.consume(queue, await self._declare(channel, queue))
        except CONNECTION_EXCEPTIONS as error:
            await subscription.cancel()
            raise BrokerError(
                f"Cannot subscribe to {list(queues)} on RabbitMQ: {error!r}"
            ) from error
        return subscription

    async def is_healthy(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def consumer_count(self, queue: str) -> int | None:
        """Consumers of ``queue`` from a passive declare on a short-lived channel of its own (a
        passive declare of a missing queue closes its channel); 0 when the queue does not exist."""
        connection = self._connection
        if connection is None or connection.is_closed:
            return None
        try:
            async with asyncio.timeout(self._publish_timeout):
                async with connection.channel(publisher_confirms=False) as channel:
                    declared = await channel.declare_queue(self.queue_name(queue), passive=True)
                    return declared.declaration_result.consumer_count
        except ChannelNotFoundEntity:
            return 0
        except (TimeoutError, *CONNECTION_EXCEPTIONS):
            return None

    async def delete_namespace(self, queues: Sequence[str]) -> None:
        """Delete ``queues``, the dead-letter queue and exchange (test clean-up)."""
        async with await self._opened()[0].channel() as channel:
            for queue in [*queues, DEAD_LETTER_QUEUE]:
                await channel.queue_delete(self.queue_name(queue))
            await channel.exchange_delete(self.dead_letter_exchange)
        self._declared.clear()

    async def _publish_one(self, channel: AbstractChannel, message: OutgoingMessage) -> None:
        # ``message.priority`` is ignored on purpose: see the module docstring.
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                message_id=message.message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.queue_name(message.queue),
            mandatory=True,  # an unroutable message is returned, and raises PublishError
        )
        if not isinstance(confirmation, Basic.Ack):
            raise BrokerError(f"RabbitMQ answered {confirmation!r} instead of a confirmation")

    async def _declare(self, channel: AbstractChannel, queue: str) -> AbstractQueue:
        return await channel.declare_queue(
            self.queue_name(queue), durable=True, arguments=self._queue_arguments(queue)
        )

    def _queue_arguments(self, queue: str) -> Arguments:
        if queue == DEAD_LETTER_QUEUE:
            return {"x-queue-type": "quorum"}
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            # At-least-once dead-lettering (RabbitMQ 3.10+) needs reject-publish overflow; without
            # it a message dead-lettered during a leader change could be lost.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def _forget(self, subscription: _RabbitSubscription) -> None:
        self._subscriptions.discard(subscription)

    def _opened(self) -> tuple[AbstractRobustConnection, AbstractChannel]:
        if self._connection is None or self._publish_channel is None:
            raise BrokerError("The RabbitMQ broker is not connected: call connect() first.")
        return self._connection, self._publish_channel
