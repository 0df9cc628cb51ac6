"""The REST calls the bench makes to a running Weir, over a real HTTP connection.

Waiting polls gently (``poll_interval``): every poll is a request the API serves and whose CPU is
counted with Weir's, so a tighter loop would inflate the CPU per task it is measuring. No time
figure depends on the polling: times come from the timestamps the service wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

__all__ = ["BenchError", "WeirClient", "poll_interval"]
_PAGE = 1000


def poll_interval(waited: float) -> float:
    """Seconds until the next poll after ``waited`` seconds of waiting: 0.1 s at first, then 2 %
    of the wait (at most 1 s), so polls stay a small, bounded share of a long run's CPU and
    stretch its CPU window by at most about 2 %."""
    return min(1.0, max(0.1, 0.02 * waited))


class BenchError(Exception):
    """A run failed or did not finish in time: the numbers would mean nothing."""


class WeirClient:
    """An admin client of one Weir API."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            limits=httpx.Limits(max_connections=50),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def trigger(self, dag_id: str) -> str:
        response = await self.http.post(f"/api/v1/dags/{dag_id}/runs", json={"conf": {}})
        if response.status_code != 201:
            raise BenchError(
                f"triggering {dag_id} answered {response.status_code}: {response.text}"
            )
        run_id: str = response.json()["run_id"]
        return run_id

    async def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._get(f"/api/v1/dags/{dag_id}/runs/{run_id}")
        return found

    async def _pages(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list, page after page."""
        found: list[dict[str, Any]] = []
        while True:
            page = await self._get(path, limit=_PAGE, offset=len(found), **params)
            found.extend(page[key])
            if not page[key] or len(found) >= page["total"]:
                return found

    async def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Every task instance of a run, by task id."""
        items = await self._pages(f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks", "task_instances")
        return {t["task_id"]: t for t in items}

    async def runs(self, dag_id: str) -> dict[str, dict[str, Any]]:
        """Every run of a DAG, by run id."""
        return {
            r["run_id"]: r for r in await self._pages(f"/api/v1/dags/{dag_id}/runs", "dag_runs")
        }

    async def count_tasks(self, dag_id: str, run_id: str, states: Sequence[str]) -> int:
        page = await self._get(
            f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks", limit=1, state=list(states)
        )
        total: int = page["total"]
        return total

    async def count_runs(self, dag_id: str, states: Sequence[str]) -> int:
        page = await self._get(f"/api/v1/dags/{dag_id}/runs", limit=1, state=list(states))
        total: int = page["total"]
        return total

    async def count_dags(self) -> int:
        total: int = (await self._get("/api/v1/dags", limit=1))["total"]
        return total

    async def wait_for_dags(self, dag_ids: Sequence[str], timeout: float) -> None:
        """Until the service knows every DAG in ``dag_ids`` (the DAG processor parsed them)."""
        missing = set(dag_ids)

        async def known(dag_id: str) -> bool:
            response = await self.http.get(f"/api/v1/dags/{dag_id}")
            return response.status_code == 200

        deadline = time.monotonic() + timeout
        while missing:
            found = await asyncio.gather(*(known(d) for d in sorted(missing)))
            missing -= {d for d, ok in zip(sorted(missing), found, strict=True) if ok}
            if missing and time.monotonic() > deadline:
                raise BenchError(f"DAGs {sorted(missing)} not loaded within {timeout:.0f} s")
            if missing:
                await asyncio.sleep(0.2)

    async def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The run once it has finished; ``BenchError`` unless it succeeded within ``timeout``."""
        started = time.monotonic()
        while True:
            run = await self.run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run)
            if run["state"] == "success":
                return run
            if run["state"] == "failed":
                raise BenchError(f"run {run_id} of {dag_id} failed")
            waited = time.monotonic() - started
            if waited > timeout:
                raise BenchError(
                    f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s (it is "
                    f"{run['state']}); give it longer with --timeout, or lower the sizes"
                )
            await asyncio.sleep(poll_interval(waited))
