"""DAG structures by version id. A version never changes once written, so caching is safe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DagVersion

__all__ = ["DagStructure", "TaskSpec", "VersionCache"]


@dataclass(frozen=True, slots=True)
class TaskSpec:
    task_id: str
    kind: str
    upstream: tuple[str, ...]
    inputs: tuple[str, ...]
    retries: int
    retry_delay: float
    queue: str


@dataclass(frozen=True, slots=True)
class DagStructure:
    version_id: int
    dag_id: str
    fileloc: str
    file_hash: str
    tasks: dict[str, TaskSpec]  # upstreams before downstreams

    @classmethod
    def from_version(cls, version: DagVersion, fileloc: str) -> DagStructure:
        return cls(
            version_id=version.id,
            dag_id=version.dag_id,
            fileloc=fileloc,
            file_hash=version.file_hash,
            tasks={t["task_id"]: _task_spec(t) for t in version.serialized["tasks"]},
        )


def _task_spec(raw: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        task_id=raw["task_id"],
        kind=raw["kind"],
        upstream=tuple(raw["upstream"]),
        inputs=tuple(raw["inputs"]),
        retries=int(raw["retries"]),
        retry_delay=float(raw["retry_delay"]),
        queue=raw["queue"],
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
