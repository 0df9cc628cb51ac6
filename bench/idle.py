"""The idle scenario: many scheduled DAGs loaded, none due, and the bench quiet; what the service
then costs is what it spends per DAG and per wake-up when nothing happens.

The DAGs (``dags.scheduled_dag_files``) start two days ahead, so each is planned but none runs.
It comes last in a setup: its thousands of DAGs stay loaded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from bench import dags
from bench.measure import idle_cpu
from bench.session import Bench
from bench.weir_client import BenchError

__all__ = ["idle"]

_SETTLE_S = 2.0
"""Quiet time between the last DAG loaded and the window: the last pass's follow-up work ends."""


async def idle(bench: Bench) -> None:
    """Load ``idle_dags`` scheduled DAGs (none due for two days), then measure quiet CPU."""
    count, client = bench.sizes.idle_dags, bench.deployment.client
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    before = await client.count_dags()
    with bench.progress.step(f"{bench.setup}: loading {count} scheduled DAGs", total=count) as step:
        started = time.monotonic()
        for name, source in dags.scheduled_dag_files(count, start).items():
            bench.deployment.write_dag(name, source)
        await _wait_loaded(bench, before + count, step.update)
        bench.add("idle", "load_s", time.monotonic() - started, "s", count)
    with bench.progress.step(f"{bench.setup}: idle {bench.sizes.idle_seconds:g} s"):
        await asyncio.sleep(min(_SETTLE_S, bench.sizes.idle_seconds))
        percent = await idle_cpu(bench.deployment, bench.sizes.idle_seconds)
    if await client.count_runs("bench_idle_00000", ["queued", "running", "success", "failed"]):
        raise BenchError("an idle DAG ran: the idle figure measured work, not idleness")
    for role, value in percent.items():
        metric = (
            "idle_cpu_percent" if role == bench.deployment.api_role else f"idle_cpu_percent_{role}"
        )
        bench.add("idle", metric, value, "%", count)


async def _wait_loaded(bench: Bench, expected: int, report: Callable[[int, int], None]) -> None:
    """Until the service lists ``expected`` DAGs. An answer 5xx while it loads them is counted
    and reported as a note (a service that fails reads while it writes is worth knowing about),
    not taken for the end of the scenario."""
    deadline = time.monotonic() + bench.timeout
    total, failed, known = bench.sizes.idle_dags, 0, 0
    while known < expected:
        try:
            known = await bench.deployment.client.count_dags()
        except httpx.HTTPStatusError as error:
            if error.response.status_code < 500:
                raise
            failed += 1
        report(known - (expected - total), total)
        bench.deployment.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(
                f"only {known} of {expected} DAGs loaded within {bench.timeout:.0f} s; "
                "lower --idle-dags or raise --timeout"
            )
        if known < expected:
            await asyncio.sleep(1.0)
    if failed:
        bench.notes.append(
            f"{bench.setup}: GET /api/v1/dags answered 5xx {failed} time(s) while {total:,} DAGs "
            "were being loaded (see the service's log)"
        )
