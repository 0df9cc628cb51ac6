"""Message brokers behind one interface; implementations are imported lazily by ``create_broker``
so that importing ``weir`` in a DAG file does not pull in aio-pika."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weir.broker.base import Broker, Delivery, DeliveryHandler, OutgoingMessage, Subscription
from weir.errors import ConfigError

if TYPE_CHECKING:
    from weir.config import Settings

__all__ = [
    "Broker",
    "Delivery",
    "DeliveryHandler",
    "OutgoingMessage",
    "Subscription",
    "create_broker",
]


def create_broker(settings: Settings) -> Broker:
    """The broker named by ``settings.broker_url``."""
    url = settings.broker_url
    if url.startswith("memory://"):
        from weir.broker.memory import MemoryBroker

        return MemoryBroker()
    if url.startswith(("amqp://", "amqps://")):
        from weir.broker.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(
            url, namespace=settings.broker_namespace, heartbeat=settings.broker_heartbeat
        )
    raise ConfigError(
        f"WEIR_BROKER_URL {url!r} is not supported: use amqp://user:pass@host:5672/ for RabbitMQ "
        "or memory:// for the in-process queue of `weir standalone`."
    )
