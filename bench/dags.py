"""The benchmark DAGs: no-op tasks, so what is measured is Weir's own overhead.

``async def`` tasks run on the worker's event loop; plain ``def`` tasks go to the worker's process
pool and pay a hop to a child process each, so the two kinds are measured separately. Every shape
has a DAG id of its own (kind and size in it), so shapes of several sizes live side by side in
one DAGs folder.

The DAGs lift their own limits (``max_active_runs``, ``max_active_tasks``: 16 by default, as in
Airflow) so that a fan-out's tasks are all ready at once and concurrent runs really run
concurrently: what is measured is the pipeline, not a throttle the DAG asked for. The service's
``default_pool`` (128 slots) and the worker's concurrency still apply, as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "DagShape",
    "TaskKind",
    "chain",
    "fanout",
    "scheduled_dag_files",
    "single",
    "small",
]

TaskKind = Literal["async", "sync"]
UNLIMITED = 1_000_000

_HEADER = """\
from weir import dag, task


@dag(max_active_runs={unlimited}, max_active_tasks={unlimited})
def {dag_id}():
    @task
    {define} start() -> None:
        return None

    @task
    {define} noop() -> None:
        return None

    @task
    {define} end() -> None:
        return None

"""

_FANOUT_BODY = """\
    start() >> [noop() for _ in range({width})] >> end()


{dag_id}()
"""

_CHAIN_BODY = """\
    previous = noop()
    for _ in range({length} - 1):
        previous = previous >> noop()


{dag_id}()
"""

_SINGLE_BODY = """\
    noop()


{dag_id}()
"""

_SCHEDULED = """\
from datetime import datetime

from weir import dag, task


def define(number: int) -> None:
    @dag(dag_id=f"bench_idle_{{number:05d}}", schedule="{cron}",
         start_date=datetime.fromisoformat("{start}"), catchup=False)
    def scheduled() -> None:
        @task
        async def noop() -> None:
            return None

        noop()

    scheduled()


for number in range({first}, {last}):
    define(number)
"""


@dataclass(frozen=True)
class DagShape:
    """A DAG file and, for the metrics, each task's upstream task ids."""

    name: str
    kind: TaskKind
    dag_id: str
    source: str
    upstreams: dict[str, tuple[str, ...]]

    @property
    def task_count(self) -> int:
        return len(self.upstreams)

    @property
    def file_name(self) -> str:
        return f"{self.dag_id}.py"


def _noop_ids(count: int) -> list[str]:
    """The ids Weir gives ``noop`` called ``count`` times: ``noop``, ``noop__1``, …"""
    return ["noop", *(f"noop__{n}" for n in range(1, count))]


def _header(dag_id: str, kind: TaskKind) -> str:
    define = "async def" if kind == "async" else "def"
    return _HEADER.format(dag_id=dag_id, define=define, unlimited=UNLIMITED)


def _fanout(name: str, dag_id: str, width: int, kind: TaskKind) -> DagShape:
    noops = _noop_ids(width)
    upstreams: dict[str, tuple[str, ...]] = {"start": ()}
    upstreams.update(dict.fromkeys(noops, ("start",)))
    upstreams["end"] = tuple(noops)
    source = _header(dag_id, kind) + _FANOUT_BODY.format(dag_id=dag_id, width=width)
    return DagShape(name, kind, dag_id, source, upstreams)


def fanout(width: int, kind: TaskKind) -> DagShape:
    """``start >> [noop] * width >> end``: throughput with many tasks ready at once."""
    return _fanout("fanout", f"bench_fanout_{kind}_{width}", width, kind)


def small(tasks: int) -> DagShape:
    """A ``tasks``-task DAG (``start >> [noop] * (tasks - 2) >> end``, async), run many times at
    once: the cost of many concurrent runs rather than of one big one."""
    if tasks < 3:
        raise ValueError(f"a small DAG has at least 3 tasks, not {tasks}")
    return _fanout("small", f"bench_small_{tasks}", tasks - 2, "async")


def chain(length: int, kind: TaskKind) -> DagShape:
    """``noop >> noop >> …``: the latency of one hand-off from a task to the next."""
    dag_id = f"bench_chain_{kind}_{length}"
    noops = _noop_ids(length)
    upstreams = {task_id: tuple(noops[i - 1 : i]) for i, task_id in enumerate(noops)}
    source = _header(dag_id, kind) + _CHAIN_BODY.format(dag_id=dag_id, length=length)
    return DagShape("chain", kind, dag_id, source, upstreams)


def single() -> DagShape:
    """One async no-op task: from a trigger to a running task, and nothing else."""
    dag_id = "bench_trigger"
    source = _header(dag_id, "async") + _SINGLE_BODY.format(dag_id=dag_id)
    return DagShape("trigger", "async", dag_id, source, {"noop": ()})


def scheduled_dag_files(
    count: int, start: datetime, *, per_file: int = 500, cron: str = "0 3 * * *"
) -> dict[str, str]:
    """``count`` scheduled one-task DAGs (``bench_idle_00000``, …), ``per_file`` to a file:
    file name → source. ``start`` in the future keeps every one of them planned but not due,
    which is what an idle service with many DAGs looks like between two of their runs."""
    files: dict[str, str] = {}
    for first in range(0, count, per_file):
        last = min(first + per_file, count)
        files[f"bench_idle_{first:05d}.py"] = _SCHEDULED.format(
            cron=cron, start=start.isoformat(), first=first, last=last
        )
    return files
