"""The bound (``bench.bound``) runs end to end on the real PostgreSQL and RabbitMQ at tiny sizes,
returns a usable figure for every measure, and removes its scratch database and queue."""

from __future__ import annotations

import logging
import math

import aio_pika
import asyncpg
import pytest
from aiormq.exceptions import ChannelNotFoundEntity

from bench.bound import BoundResult, measure_bound
from bench.bound.scratch import ADMIN_DATABASE, libpq_dsn
from tests.support.services import postgres_dsn, rabbitmq_url, require_postgres, require_rabbitmq

pytestmark = pytest.mark.postgres


async def _database_exists(database_url: str, name: str) -> bool:
    admin = await asyncpg.connect(libpq_dsn(database_url, ADMIN_DATABASE))
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await admin.close()


async def _queue_exists(amqp_url: str, name: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    try:
        # A passive declare of a missing queue closes the channel it was sent on.
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return False
        await channel.close()
        return True
    finally:
        await connection.close()


async def test_the_bound_measures_every_figure_and_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database_url, amqp_url = postgres_dsn(), rabbitmq_url()
    await require_postgres(database_url)
    await require_rabbitmq(amqp_url)
    caplog.set_level(logging.INFO, logger="bench.bound.measure")

    result = await measure_bound(database_url, amqp_url, fanout=20, chain=5, triggers=3)

    assert isinstance(result, BoundResult)
    assert result.fanout_tasks == 20
    figures = result.as_dict()
    assert set(figures) == {
        "fanout_tasks",
        "fanout_tasks_per_s",
        "cpu_ms_per_task",
        "hop_p50_ms",
        "hop_p95_ms",
        "trigger_p50_ms",
    }
    assert all(math.isfinite(value) and value > 0 for value in figures.values()), figures
    assert result.hop_p50_ms <= result.hop_p95_ms

    (name,) = {r.scratch_name for r in caplog.records if hasattr(r, "scratch_name")}
    assert name.startswith("weir_bound_")
    assert not await _database_exists(database_url, name)
    assert not await _queue_exists(amqp_url, name)


async def test_sizes_too_small_to_measure_are_refused_before_anything_is_created() -> None:
    with pytest.raises(ValueError, match="chain at least 2"):
        await measure_bound(postgres_dsn(), rabbitmq_url(), chain=1)
