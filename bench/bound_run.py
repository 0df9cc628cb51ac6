"""Run the minimal pipeline (``bench.bound``) in the same invocation as Weir, on the same
PostgreSQL server and RabbitMQ (in a scratch database and queue of its own), at the sizes of
Weir's headline scenarios.

Every throughput Weir shows is also printed as a ratio to this bound: absolute figures on a shared
machine vary run to run, ratios measured minutes apart much less.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from tests.support.services import postgres_dsn, rabbitmq_url, require_postgres, require_rabbitmq

__all__ = ["is_bound_available", "measure_bound_figures"]


def is_bound_available() -> bool:
    """Whether this tree has ``bench.bound.measure_bound`` (it came later than the suite)."""
    try:
        module = importlib.import_module("bench.bound")
    except ImportError:
        return False
    return hasattr(module, "measure_bound")


async def measure_bound_figures(*, fanout: int, chain: int, triggers: int) -> Mapping[str, float]:
    """The bound's figures (``BoundResult.as_dict()``)."""
    from bench.bound import measure_bound

    await require_postgres(postgres_dsn())
    await require_rabbitmq(rabbitmq_url())
    result = await measure_bound(
        postgres_dsn(), rabbitmq_url(), fanout=fanout, chain=chain, triggers=triggers
    )
    figures: Mapping[str, float] = result.as_dict()
    return figures
