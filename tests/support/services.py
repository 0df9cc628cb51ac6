"""The real services integration tests run against, and how a test asks for one.

A missing service skips the test on a developer's machine but fails it in CI (``CI=true``), so
that a broken CI service can never turn the suite green by skipping it. Each service is probed
once per URL and the answer is remembered, so a missing one costs one timeout, not one per test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

__all__ = ["postgres_dsn", "rabbitmq_url", "require_postgres", "require_rabbitmq"]

_PROBE_TIMEOUT = 5.0
_unavailable: dict[str, str | None] = {}
"""URL → why the service there is unavailable (None when it answered)."""


def rabbitmq_url() -> str:
    """The RabbitMQ the tests use: ``WEIR_TEST_BROKER_URL``, else a local guest login."""
    return os.environ.get("WEIR_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


def postgres_dsn() -> str:
    """The PostgreSQL the tests use (SQLAlchemy form): ``WEIR_TEST_DATABASE_URL`` or a local one."""
    return os.environ.get(
        "WEIR_TEST_DATABASE_URL", "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/postgres"
    )


async def require_rabbitmq(url: str) -> None:
    """Skip the calling test (fail it in CI) unless RabbitMQ accepts a connection at ``url``."""

    async def probe() -> None:
        import aio_pika

        connection = await aio_pika.connect(url)
        await connection.close()

    await _require("RabbitMQ", url, probe)


async def require_postgres(dsn: str) -> None:
    """Skip the calling test (fail it in CI) unless PostgreSQL accepts a connection at ``dsn``.

    ``dsn`` may be a SQLAlchemy URL (``postgresql+asyncpg://…``) or a plain libpq one.
    """

    async def probe() -> None:
        import asyncpg

        connection = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://", 1))
        await connection.close()

    await _require("PostgreSQL", dsn, probe)


async def _require(service: str, url: str, probe: Callable[[], Awaitable[None]]) -> None:
    if url not in _unavailable:
        _unavailable[url] = await _probe(service, url, probe)
    reason = _unavailable[url]
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, where every integration service must be up.")
    pytest.skip(reason)


async def _probe(service: str, url: str, probe: Callable[[], Awaitable[None]]) -> str | None:
    where = urlsplit(url)  # never print the password
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            await probe()
    except Exception as error:
        return f"{service} is unreachable at {where.hostname}:{where.port} ({error!r})"
    return None
