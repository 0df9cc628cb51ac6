"""The ``Broker`` contract, run against both implementations: a difference between them is a bug.

Synchronisation waits on queues with timeouts; the only fixed waits are the short bounded ones
that prove a message does *not* arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

import aio_pika
import pytest

from tests.support.services import rabbitmq_url, require_rabbitmq
from weir.broker import Broker, Delivery, OutgoingMessage, Subscription
from weir.broker.memory import MemoryBroker
from weir.broker.rabbitmq import RabbitMQBroker
from weir.errors import BrokerError

QUEUES = ["default", "other"]
ARRIVAL_TIMEOUT = 10.0
ABSENCE_WAIT = 0.3


class Inbox:
    """A handler that hands each delivery to the test and holds it until the test is done,
    so that the test, not the handler, decides when and how it is settled."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.put_nowait(delivery)
        await self.release.wait()

    async def next(self, within: float = ARRIVAL_TIMEOUT) -> Delivery:
        async with asyncio.timeout(within):
            return await self.deliveries.get()

    async def assert_nothing_arrives(self) -> None:
        with pytest.raises(TimeoutError):
            await self.next(within=ABSENCE_WAIT)


class MemoryBackend:
    """Opens the in-process broker; its queues live in the object, so reopening keeps them."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()

    async def open(self) -> Broker:
        """A connected broker that sees the queues as earlier brokers left them."""
        await self.broker.connect()
        return self.broker

    async def next_dead_letter(self, broker: Broker) -> bytes:
        return self.broker.dead_letters.pop(0).body

    async def clean_up(self) -> None:
        await self.broker.close()


class RabbitMQBackend:
    """Opens RabbitMQ brokers on a namespace of the test's own, deleted afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"test-{uuid4().hex[:8]}"
        self.brokers: list[RabbitMQBroker] = []

    async def open(self) -> Broker:
        """A connected broker that sees the queues as earlier brokers left them."""
        broker = RabbitMQBroker(self.url, namespace=self.namespace)
        self.brokers.append(broker)
        await broker.connect()
        return broker

    async def next_dead_letter(self, broker: Broker) -> bytes:
        inbox = Inbox()
        subscription = await broker.subscribe(["dead-letter"], 1, inbox)
        delivery = await inbox.next()
        await delivery.ack()
        await subscription.cancel()
        inbox.release.set()
        return delivery.body

    async def clean_up(self) -> None:
        try:
            for broker in self.brokers:
                await broker.close()
        finally:
            admin = RabbitMQBroker(self.url, namespace=self.namespace)
            await admin.connect()
            try:
                await admin.delete_namespace(QUEUES)
            finally:
                await admin.close()


Backend = MemoryBackend | RabbitMQBackend


@asynccontextmanager
async def open_backend(kind: str) -> AsyncIterator[Backend]:
    backend: Backend
    if kind == "rabbitmq":
        url = rabbitmq_url()
        await require_rabbitmq(url)
        backend = RabbitMQBackend(url)
    else:
        backend = MemoryBackend()
    try:
        yield backend
    finally:
        await backend.clean_up()


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with open_backend(request.param) as opened:
        yield opened


@pytest.fixture
async def rabbitmq_backend() -> AsyncIterator[RabbitMQBackend]:
    async with open_backend("rabbitmq") as opened:
        assert isinstance(opened, RabbitMQBackend)
        yield opened


@pytest.fixture
async def broker(backend: Backend) -> Broker:
    return await backend.open()


def message(body: str, queue: str = "default") -> OutgoingMessage:
    return OutgoingMessage(queue=queue, body=body.encode(), message_id=uuid4().hex)


async def test_published_message_is_delivered_once_and_acked(broker: Broker) -> None:
    inbox = Inbox()
    await broker.subscribe(QUEUES, 1, inbox)

    await broker.publish([message('{"n": 1}', queue="other")])

    delivery = await inbox.next()
    assert (delivery.body, delivery.queue, delivery.redelivered) == (b'{"n": 1}', "other", False)
    await delivery.ack()
    await inbox.assert_nothing_arrives()
    with pytest.raises(RuntimeError, match="already settled"):
        await delivery.nack()


async def test_nacked_message_is_redelivered_marked(broker: Broker) -> None:
    inbox = Inbox()
    await broker.subscribe(["default"], 1, inbox)
    await broker.subscribe(["default"], 1, inbox)
    await broker.publish([message("retry me")])

    first = await inbox.next()
    assert not first.redelivered
    await first.nack()

    again = await inbox.next()
    assert (again.body, again.redelivered) == (b"retry me", True)
    await again.ack()
    await inbox.assert_nothing_arrives()


async def test_dead_lettered_message_moves_to_dead_letter_queue(
    backend: Backend, broker: Broker
) -> None:
    inbox = Inbox()
    await broker.subscribe(["default"], 1, inbox)
    await broker.publish([message("not json")])

    await (await inbox.next()).dead_letter()

    await inbox.assert_nothing_arrives()
    assert await backend.next_dead_letter(broker) == b"not json"


async def test_prefetch_bounds_unsettled_deliveries(broker: Broker) -> None:
    inbox = Inbox()
    await broker.subscribe(["default"], 2, inbox)
    await broker.publish([message(f"m{n}") for n in range(5)])

    first, second = await inbox.next(), await inbox.next()
    await inbox.assert_nothing_arrives()

    await first.ack()
    third = await inbox.next()
    await inbox.assert_nothing_arrives()
    assert {first.body, second.body, third.body} == {b"m0", b"m1", b"m2"}


async def test_cancel_stops_deliveries_but_in_flight_one_can_be_acked(broker: Broker) -> None:
    inbox = Inbox()
    subscription = await broker.subscribe(["default"], 2, inbox)
    await broker.publish([message("before")])
    in_flight = await inbox.next()

    await subscription.cancel()
    await broker.publish([message("after")])
    await inbox.assert_nothing_arrives()
    await in_flight.ack()

    later = Inbox()
    await broker.subscribe(["default"], 2, later)
    assert (await later.next()).body == b"after"
    await later.assert_nothing_arrives()  # "before" was acked, so it does not come back


async def test_handler_may_cancel_its_own_subscription(broker: Broker) -> None:
    """The worker's flow control: the handler taking the last free slot stops the consumer."""
    acked: asyncio.Queue[bytes] = asyncio.Queue()
    subscriptions: list[Subscription] = []

    async def take_last_slot(delivery: Delivery) -> None:
        await subscriptions[0].cancel()
        await delivery.ack()
        acked.put_nowait(delivery.body)

    subscriptions.append(await broker.subscribe(["default"], 1, take_last_slot))
    await broker.publish([message("first"), message("second")])
    async with asyncio.timeout(ARRIVAL_TIMEOUT):
        assert await acked.get() == b"first"

    later = Inbox()
    await broker.subscribe(["default"], 1, later)
    assert (await later.next()).body == b"second"


async def test_close_returns_unsettled_messages(backend: Backend, broker: Broker) -> None:
    inbox = Inbox()
    await broker.subscribe(["default"], 2, inbox)
    await broker.publish([message("acked"), message("unsettled")])
    deliveries: dict[bytes, Delivery] = {}
    for _ in range(2):
        delivery = await inbox.next()
        deliveries[delivery.body] = delivery
    await deliveries[b"acked"].ack()

    await broker.close()

    reopened = await backend.open()
    later = Inbox()
    await reopened.subscribe(["default"], 2, later)
    returned = await later.next()
    assert (returned.body, returned.redelivered) == (b"unsettled", True)
    await later.assert_nothing_arrives()


async def test_handler_error_is_logged_and_message_returned(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    seen: asyncio.Queue[Delivery] = asyncio.Queue()

    async def fail_first_time(delivery: Delivery) -> None:
        seen.put_nowait(delivery)
        if not delivery.redelivered:
            raise ValueError("boom")
        await delivery.ack()

    await broker.subscribe(["default"], 1, fail_first_time)
    await broker.publish([message("flaky")])

    async with asyncio.timeout(ARRIVAL_TIMEOUT):
        assert not (await seen.get()).redelivered
        assert (await seen.get()).redelivered  # the subscription survived the error
    assert any(
        record.levelno == logging.ERROR and record.exc_info and "boom" in str(record.exc_info[1])
        for record in caplog.records
    )


async def test_closed_broker_is_unhealthy_and_refuses_to_publish(broker: Broker) -> None:
    assert await broker.is_healthy()
    await broker.close()
    assert not await broker.is_healthy()
    with pytest.raises(BrokerError, match="connect"):
        await broker.publish([message("too late")])


@pytest.mark.rabbitmq
async def test_rabbitmq_messages_are_persistent_json_with_ids(
    rabbitmq_backend: RabbitMQBackend,
) -> None:
    broker = await rabbitmq_backend.open()
    sent = message("{}")
    await broker.publish([sent])

    async with await aio_pika.connect(rabbitmq_backend.url) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{rabbitmq_backend.namespace}.default", ensure=False)
        received = await queue.get(timeout=ARRIVAL_TIMEOUT)
        await received.ack()
    assert received.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (received.content_type, received.message_id) == ("application/json", sent.message_id)


@pytest.mark.rabbitmq
async def test_rabbitmq_unroutable_publish_raises_then_recovers(
    rabbitmq_backend: RabbitMQBackend,
) -> None:
    broker = await rabbitmq_backend.open()
    await broker.publish([message("declares the queue")])
    async with await aio_pika.connect(rabbitmq_backend.url) as connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{rabbitmq_backend.namespace}.default")

    with pytest.raises(BrokerError, match="did not confirm 1 of 1"):
        await broker.publish([message("returned: no queue")])

    await broker.publish([message("declared again")])
    inbox = Inbox()
    await broker.subscribe(["default"], 1, inbox)
    assert (await inbox.next()).body == b"declared again"


async def test_rabbitmq_connect_failure_is_a_broker_error() -> None:
    broker = RabbitMQBroker("amqp://guest:guest@127.0.0.1:1/", namespace="unused")
    with pytest.raises(BrokerError, match="Cannot connect to RabbitMQ"):
        await broker.connect()
    assert not await broker.is_healthy()
