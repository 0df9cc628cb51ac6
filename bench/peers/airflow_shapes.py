"""The three shapes on a running Airflow, measured as Weir's bench measures Weir, with the CPU of
Airflow's process trees read before and after the measured runs.

One warm-up run comes first, for all shapes: a fan-out as wide as twice the LocalExecutor's
processes (the first task of a fresh Airflow waits seconds on the api-server's first calls, and
each worker process has its first task to run). A warm-up per shape, as Weir's bench does, would
cost a whole 202-task fan-out and a 50-task chain more, minutes on a shared machine, to warm what
is already warm: each task process parses its DAG file anew, whichever ran before.

A run's wall time is from just before the trigger request to the run's ``end_date`` as Airflow
recorded it, so how often the bench polls for the end (every 100 ms) adds nothing to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.figures import Figure
from bench.measure import CpuUsage, measure_cpu
from bench.peers.airflow_run import AirflowError, RunningAirflow
from bench.peers.timings import (
    TaskTimes,
    chain_figures,
    cpu_figure,
    fanout_figures,
    hops_ms,
    trigger_figures,
)

__all__ = [
    "Measured",
    "measure_chain",
    "measure_fanout",
    "measure_trigger",
    "warm_up",
]

_POLL_INTERVAL = 0.1
Advance = Callable[[], None]


@dataclass
class Measured:
    """Figures of one shape and the raw numbers they came from (kept in the JSON)."""

    figures: list[Figure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    run_id: str
    triggered: datetime
    end: datetime
    tasks: dict[str, TaskTimes]

    @property
    def wall_s(self) -> float:
        return (self.end - self.triggered).total_seconds()


async def _trigger(airflow: RunningAirflow, dag_id: str) -> tuple[str, datetime]:
    triggered = datetime.now(UTC)
    response = await airflow.client.post(
        f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None}
    )
    if response.status_code >= 300:
        raise AirflowError(f"triggering {dag_id}: {response.status_code} {response.text}")
    return str(response.json()["dag_run_id"]), triggered


async def _wait_finished(airflow: RunningAirflow, dag_id: str, run_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await airflow.fetch(
            "SELECT state, end_date FROM dag_run WHERE dag_id = $1 AND run_id = $2", dag_id, run_id
        )
        if rows and rows[0]["state"] in ("success", "failed"):
            return rows[0]
        airflow.check_alive()
        await asyncio.sleep(_POLL_INTERVAL)
    raise AirflowError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s")


async def run_once(airflow: RunningAirflow, dag_id: str, timeout: float) -> Run:
    """Trigger ``dag_id``, wait for its end, and read every task instance's start and end."""
    run_id, triggered = await _trigger(airflow, dag_id)
    run = await _wait_finished(airflow, dag_id, run_id, timeout)
    rows = await airflow.fetch(
        "SELECT task_id, state, start_date, end_date FROM task_instance "
        "WHERE dag_id = $1 AND run_id = $2",
        dag_id,
        run_id,
    )
    failed = sorted(r["task_id"] for r in rows if r["state"] != "success")
    if run["state"] != "success" or failed:
        raise AirflowError(f"run {run_id} of {dag_id} ended {run['state']}; not success: {failed}")
    tasks = {r["task_id"]: TaskTimes(r["task_id"], r["start_date"], r["end_date"]) for r in rows}
    return Run(run_id, triggered, run["end_date"], tasks)


async def warm_up(airflow: RunningAirflow, *, timeout: float) -> Measured:
    """The unmeasured run before the shapes (see the module docstring)."""
    run = await run_once(airflow, "peers_warmup", timeout)
    return Measured(raw={"tasks": len(run.tasks), "wall_s": run.wall_s})


async def _measured_runs(
    airflow: RunningAirflow, dag_id: str, repeat: int, timeout: float, advance: Advance
) -> tuple[list[Run], CpuUsage]:
    """``repeat`` runs of ``dag_id`` and the CPU each component used in them."""
    runs = []
    with measure_cpu(airflow.pids) as cpu:
        for _ in range(repeat):
            runs.append(await run_once(airflow, dag_id, timeout))
            advance()
    return runs, cpu


async def measure_fanout(
    airflow: RunningAirflow, repeat: int, *, timeout: float, advance: Advance
) -> Measured:
    width = airflow.layout.width
    runs, cpu = await _measured_runs(airflow, "peers_fanout", repeat, timeout, advance)
    task_count = len(runs[0].tasks)
    walls = [r.wall_s for r in runs]
    figures = fanout_figures(task_count, walls, width=width)
    figures.append(cpu_figure("fanout", cpu.total_s, task_count * repeat, size=width))
    raw = {"tasks": task_count, "wall_s": walls, "cpu_s": cpu.seconds}
    return Measured(figures, raw)


async def measure_chain(
    airflow: RunningAirflow, repeat: int, *, timeout: float, advance: Advance
) -> Measured:
    length = airflow.layout.length
    runs, cpu = await _measured_runs(airflow, "peers_chain", repeat, timeout, advance)
    order = [f"noop_{n}" for n in range(length)]
    hops = [hop for run in runs for hop in hops_ms(run.tasks, order)]
    figures = chain_figures(hops, length=length)
    figures.append(cpu_figure("chain", cpu.total_s, length * repeat, size=length))
    raw = {"wall_s": [r.wall_s for r in runs], "hops_ms": hops, "cpu_s": cpu.seconds}
    return Measured(figures, raw)


async def measure_trigger(
    airflow: RunningAirflow, triggers: int, *, timeout: float, advance: Advance
) -> Measured:
    """Sequential triggers of the one-task DAG: request sent → its task's ``start_date``."""
    latencies = []
    for _ in range(triggers):
        run = await run_once(airflow, "peers_trigger", timeout)
        latencies.append((run.tasks["noop"].start - run.triggered).total_seconds() * 1000.0)
        advance()
    return Measured(trigger_figures(latencies), {"latencies_ms": latencies})
