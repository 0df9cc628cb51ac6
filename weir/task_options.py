"""The options of ``@task``: checked when the DAG file is imported, serialized for the scheduler."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, TypedDict

from weir.errors import DagDefinitionError

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_QUEUE",
    "DEFAULT_SENSOR_TIMEOUT",
    "TRIGGER_RULES",
    "TaskArguments",
    "TaskOptions",
]

DEFAULT_QUEUE = "default"
DEFAULT_POOL = "default_pool"
TRIGGER_RULES = frozenset(
    {
        "all_success",
        "all_failed",
        "all_done",
        "one_success",
        "one_failed",
        "none_failed",
        "none_skipped",
        "always",
    }
)


class TaskArguments(TypedDict, total=False):
    """Keyword arguments of ``@task`` (see ``TaskOptions`` for their meaning)."""

    task_id: str | None
    retries: int
    retry_delay: float | timedelta
    retry_exponential_backoff: bool
    max_retry_delay: float | timedelta | None
    timeout: float | timedelta | None
    queue: str
    pool: str
    pool_slots: int
    priority_weight: int
    trigger_rule: str
    poke_interval: float | timedelta
    soft_fail: bool
    on_success: Any
    on_failure: Any
    on_retry: Any


_SECONDS = ("retry_delay", "max_retry_delay", "timeout", "poke_interval")
DEFAULT_SENSOR_TIMEOUT = 7 * 24 * 3600.0
"""A sensor's ``timeout`` when none is given (Airflow's): a sensor never waits forever."""
_SENSOR_ONLY = ("poke_interval", "soft_fail")


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    task_id: str | None = None
    retries: int = 0
    retry_delay: float = 0.0
    """Seconds before the next try; with ``retry_exponential_backoff`` the first of a doubling."""
    retry_exponential_backoff: bool = False
    max_retry_delay: float | None = None
    timeout: float | None = None
    """Seconds an attempt may run before the worker stops it; it then counts as a failure."""
    queue: str = DEFAULT_QUEUE
    pool: str = DEFAULT_POOL
    pool_slots: int = 1
    priority_weight: int = 1
    trigger_rule: str = "all_success"
    branch: bool = False
    """Set by ``@task.branch``: the return value names the downstream task(s) to follow."""
    sensor: bool = False
    """Set by ``@task.sensor``: a falsy return value means "not yet, poke again later"; its
    ``timeout`` then counts from the first poke, across pokes, not per attempt."""
    poke_interval: float = 60.0
    """Seconds between a sensor's pokes; its worker slot is free in between."""
    soft_fail: bool = False
    """A sensor that times out is skipped (and its downstream tasks with it) instead of failed."""
    on_success: Any = None
    on_failure: Any = None
    on_retry: Any = None

    @classmethod
    def build(cls, options: dict[str, Any]) -> TaskOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DagDefinitionError(
                f"Unknown @task option(s) {unknown}; the options are "
                f"{sorted(known - {'branch', 'sensor'})}."
            )
        values = dict(options)
        for name in _SECONDS:
            if isinstance(values.get(name), timedelta):
                values[name] = values[name].total_seconds()
        if values.get("sensor") and values.get("timeout") is None:
            values["timeout"] = DEFAULT_SENSOR_TIMEOUT
        built = cls(**values)
        built.check()
        return built

    def check(self) -> None:
        if self.retries < 0 or self.retry_delay < 0:
            raise DagDefinitionError("@task retries and retry_delay must not be negative.")
        for name in ("max_retry_delay", "timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise DagDefinitionError(f"@task {name} must be positive.")
        self._check_sensor()
        if self.pool_slots < 1:
            raise DagDefinitionError("@task pool_slots must be at least 1.")
        if self.trigger_rule not in TRIGGER_RULES:
            raise DagDefinitionError(
                f"Unknown trigger_rule {self.trigger_rule!r}; use one of {sorted(TRIGGER_RULES)}."
            )

    def _check_sensor(self) -> None:
        if self.poke_interval <= 0:
            raise DagDefinitionError("@task.sensor poke_interval must be positive.")
        if not self.sensor and (self.soft_fail or self.poke_interval != TaskOptions.poke_interval):
            raise DagDefinitionError(
                f"{' and '.join(_SENSOR_ONLY)} are options of @task.sensor, not of @task."
            )
        if self.sensor and self.branch:
            raise DagDefinitionError("A task cannot be both a sensor and a branch.")

    def replace(self, **changes: Any) -> TaskOptions:
        return TaskOptions.build({**_fields(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        serialized = _fields(self)
        for name in ("task_id", "on_success", "on_failure", "on_retry"):
            del serialized[name]
        serialized.update(
            has_on_success=self.on_success is not None,
            has_on_failure=self.on_failure is not None,
            has_on_retry=self.on_retry is not None,
        )
        return serialized


def _fields(options: TaskOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
