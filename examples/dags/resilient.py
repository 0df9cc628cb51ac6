"""Retries with a delay, and an async task that waits without holding a process."""

import asyncio
import random

from weir import dag, task


@dag(tags=["example"])
def resilient():
    """A flaky call retried up to three times, then an async step."""

    @task(retries=3, retry_delay=2)
    def flaky_call() -> float:
        value = random.random()
        if value < 0.5:
            raise ConnectionError(f"the remote service hiccupped ({value:.2f}); Weir will retry")
        return value

    @task
    async def wait_and_round(value: float) -> float:
        await asyncio.sleep(0.5)
        return round(value, 2)

    wait_and_round(flaky_call())


resilient()
