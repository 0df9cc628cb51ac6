"""The benchmark DAGs: no-op tasks, so what is measured is Weir's own overhead.

``async def`` tasks run on the worker's event loop; plain ``def`` tasks go to the worker's process
pool and pay a hop to a child process each, so the two kinds are measured separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DagShape", "TaskKind", "chain", "fanout"]

TaskKind = Literal["async", "sync"]

_HEADER = """\
from weir import dag, task


@dag
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


def _noop_ids(count: int) -> list[str]:
    """The ids Weir gives ``noop`` called ``count`` times: ``noop``, ``noop__1``, …"""
    return ["noop", *(f"noop__{n}" for n in range(1, count))]


def _define(kind: TaskKind) -> str:
    return "async def" if kind == "async" else "def"


def fanout(width: int, kind: TaskKind) -> DagShape:
    """``start >> [noop] * width >> end``: throughput with many tasks ready at once."""
    dag_id = f"bench_fanout_{kind}"
    noops = _noop_ids(width)
    upstreams: dict[str, tuple[str, ...]] = {"start": ()}
    upstreams.update(dict.fromkeys(noops, ("start",)))
    upstreams["end"] = tuple(noops)
    source = _HEADER.format(dag_id=dag_id, define=_define(kind)) + _FANOUT_BODY.format(
        dag_id=dag_id, width=width
    )
    return DagShape("fanout", kind, dag_id, source, upstreams)


def chain(length: int, kind: TaskKind) -> DagShape:
    """``noop >> noop >> …``: the latency of one hand-off from a task to the next."""
    dag_id = f"bench_chain_{kind}"
    noops = _noop_ids(length)
    upstreams = {task_id: tuple(noops[i - 1 : i]) for i, task_id in enumerate(noops)}
    source = _HEADER.format(dag_id=dag_id, define=_define(kind)) + _CHAIN_BODY.format(
        dag_id=dag_id, length=length
    )
    return DagShape("chain", kind, dag_id, source, upstreams)
