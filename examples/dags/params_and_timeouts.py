"""Params, retries with exponential backoff, and timeouts: a load whose size the trigger chooses,
retried with a doubling delay when its source is flaky, stopped if it hangs.

Trigger it with ``POST /api/v1/dags/params_and_timeouts/runs`` and ``{"conf": {"rows": 500}}``; a
conf such as ``{"rows": "many"}`` is refused with a 422 naming ``conf.rows``.
"""

import asyncio
from datetime import timedelta

from weir import Param, dag, get_current_context, task


@dag(
    params={
        "rows": Param(100, type="integer", minimum=1, maximum=10_000),
        "source": Param("orders", type="string", enum=["orders", "customers"]),
    },
    dagrun_timeout=timedelta(minutes=30),
    tags=["example"],
)
def params_and_timeouts():
    """A whole run may take 30 minutes; each try of ``extract`` one minute."""

    @task(
        retries=4,
        retry_delay=timedelta(seconds=10),
        retry_exponential_backoff=True,  # 10 s, 20 s, 40 s, then capped:
        max_retry_delay=timedelta(minutes=1),
        timeout=timedelta(minutes=1),
    )
    async def extract() -> list[int]:
        params = get_current_context().params
        print(f"reading {params['rows']} rows from {params['source']}")
        await asyncio.sleep(0.1)  # a real task would call its source here
        return list(range(params["rows"]))

    @task.shell(timeout=30)
    def archive(rows: list[int]) -> str:
        return f"echo archived {len(rows)} rows"

    archive(extract())


params_and_timeouts()
