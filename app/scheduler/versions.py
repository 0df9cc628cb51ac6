"""DAG structures by version id. A version never changes once written, so caching is safe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagVersion

__all__ = ["DagStructure", "MapSpec", "TaskSpec", "VersionCache"]


@dataclass(frozen=True, slots=True)
class MapSpec:
    """What a mapped task expands over (``weir.task.MappedArgument``, serialized): the argument,
    and either the upstream task whose list it maps or a literal list."""

    arg: str
    source: str | None
    literal: list[Any] | None


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task as the scheduler sees it (the serialized options of ``weir.task_options``)."""

    task_id: str
    kind: str
    upstream: tuple[str, ...]
    inputs: tuple[str, ...]
    retries: int
    retry_delay: float
    retry_exponential_backoff: bool
    max_retry_delay: float | None
    timeout: float | None
    queue: str
    pool: str
    pool_slots: int
    priority_weight: int
    trigger_rule: str
    branch: bool
    mapped: MapSpec | None = None


@dataclass(frozen=True, slots=True)
class DagStructure:
    version_id: int
    dag_id: str
    fileloc: str
    file_hash: str
    tasks: dict[str, TaskSpec]  # upstreams before downstreams
    options: dict[str, Any]  # the DAG-level options of ``weir.dag_options``, serialized
    # Direct downstream task ids of each task, in the structure's order: computed once per
    # version, so following a task to its downstreams costs its out-degree, not the DAG's size.
    downstream: dict[str, tuple[str, ...]]
    position: dict[str, int]  # each task's place in ``tasks``
    # Tasks a report cannot decide alone (``frontier``): mapped, or with a branch or mapped
    # task upstream.
    aggregating: frozenset[str]
    _others: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_version(cls, version: DagVersion, fileloc: str) -> DagStructure:
        tasks = {t["task_id"]: _task_spec(t) for t in version.serialized["tasks"]}
        return cls(
            version_id=version.id,
            dag_id=version.dag_id,
            fileloc=fileloc,
            file_hash=version.file_hash,
            tasks=tasks,
            options={k: v for k, v in version.serialized.items() if k != "tasks"},
            downstream=_downstream_map(tasks),
            position={task_id: i for i, task_id in enumerate(tasks)},
            aggregating=frozenset(
                spec.task_id
                for spec in tasks.values()
                if spec.mapped is not None
                or any(tasks[up].branch or tasks[up].mapped is not None for up in spec.upstream)
            ),
        )

    @property
    def max_active_runs(self) -> int:
        return int(self.options.get("max_active_runs", 16))

    @property
    def max_active_tasks(self) -> int:
        return int(self.options.get("max_active_tasks", 16))

    def downstream_of(self, task_id: str) -> list[str]:
        """Direct downstream task ids, in the structure's order."""
        return list(self.downstream.get(task_id, ()))

    def not_upstream_of(self, task_id: str) -> tuple[str, ...]:
        """Every task that is not a direct upstream of ``task_id`` (itself included), computed
        once per task: the short way to name a join's upstreams when they are most of the DAG."""
        others = self._others.get(task_id)
        if others is None:
            upstream = set(self.tasks[task_id].upstream)
            others = self._others[task_id] = tuple(t for t in self.tasks if t not in upstream)
        return others


def _downstream_map(tasks: dict[str, TaskSpec]) -> dict[str, tuple[str, ...]]:
    downstream: dict[str, list[str]] = {task_id: [] for task_id in tasks}
    for spec in tasks.values():
        for up in spec.upstream:
            downstream.setdefault(up, []).append(spec.task_id)
    return {task_id: tuple(downs) for task_id, downs in downstream.items()}


def _task_spec(raw: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        task_id=raw["task_id"],
        kind=raw["kind"],
        upstream=tuple(raw["upstream"]),
        inputs=tuple(raw["inputs"]),
        retries=int(raw["retries"]),
        retry_delay=float(raw["retry_delay"]),
        retry_exponential_backoff=bool(raw.get("retry_exponential_backoff", False)),
        max_retry_delay=raw.get("max_retry_delay"),
        timeout=raw.get("timeout"),
        queue=raw["queue"],
        pool=raw.get("pool", "default_pool"),
        pool_slots=int(raw.get("pool_slots", 1)),
        priority_weight=int(raw.get("priority_weight", 1)),
        trigger_rule=raw.get("trigger_rule", "all_success"),
        branch=bool(raw.get("branch", False)),
        mapped=MapSpec(**raw["mapped"]) if raw.get("mapped") else None,
    )


class VersionCache:
    """Structures loaded once per process and kept: versions are immutable."""

    def __init__(self) -> None:
        self._structures: dict[int, DagStructure] = {}

    async def get_many(
        self, session: AsyncSession, version_ids: Iterable[int]
    ) -> dict[int, DagStructure]:
        wanted = set(version_ids)
        missing = wanted - self._structures.keys()
        if missing:
            rows = await session.scalars(select(DagVersion).where(DagVersion.id.in_(missing)))
            for version in rows:
                fileloc = version.serialized.get("fileloc", "")
                self._structures[version.id] = DagStructure.from_version(version, fileloc)
        return {vid: self._structures[vid] for vid in wanted}

    async def get(self, session: AsyncSession, version_id: int) -> DagStructure:
        return (await self.get_many(session, [version_id]))[version_id]
