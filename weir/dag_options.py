"""The options of ``@dag``: what a DAG author may set, checked when the DAG is built, and their
serialized form (the scheduler reads them from the stored structure, never from the file)."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Any, TypedDict

from weir.errors import DagDefinitionError
from weir.params import Param, serialize_params
from weir.schedule import check_schedule
from weir.webhooks import Webhook, check_webhooks

__all__ = ["DagArguments", "DagOptions"]


class DagArguments(TypedDict, total=False):
    """Keyword arguments of ``@dag`` (see ``DagOptions`` for their meaning)."""

    dag_id: str
    schedule: str | timedelta | None
    start_date: datetime | None
    end_date: datetime | None
    timezone: str
    catchup: bool
    max_active_runs: int
    max_active_tasks: int
    dagrun_timeout: float | timedelta | None
    params: dict[str, Any]
    tags: list[str]
    description: str | None
    triggers: list[Webhook]
    on_success: Any
    on_failure: Any
    retention_days: float | timedelta | None
    retention_runs: int | None
    owner: str | None


@dataclasses.dataclass(frozen=True)
class DagOptions:
    schedule: str | timedelta | None = None
    """A cron expression, a preset (``@daily`` …), a ``timedelta``, or None for manual runs only."""
    start_date: datetime | None = None
    end_date: datetime | None = None
    timezone: str = "UTC"
    """The zone cron expressions are read in (an IANA name such as ``Europe/Paris``)."""
    catchup: bool = False
    """Create the runs of intervals missed since ``start_date`` (off: only the latest)."""
    max_active_runs: int = 16
    max_active_tasks: int = 16
    dagrun_timeout: float | None = None
    """Seconds a run may take before its unfinished tasks are failed."""
    params: dict[str, Param] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
    description: str | None = None
    triggers: list[Webhook] = dataclasses.field(default_factory=list)
    """External triggers (``weir.Webhook``); the DAG processor keeps their hooks in line."""
    on_success: Any = None
    on_failure: Any = None
    retention_days: float | None = None
    """Delete this DAG's finished runs that ended longer ago (days, or a ``timedelta``). None:
    the global ``WEIR_RETENTION_DAYS`` applies; 0: no age limit for this DAG."""
    retention_runs: int | None = None
    """Keep only this many most recent finished runs. None: the global ``WEIR_RETENTION_RUNS``
    applies; 0: no count limit for this DAG."""
    owner: str | None = None
    """Who to ask about this DAG (a team or a person), shown on the dashboard."""

    @classmethod
    def build(cls, where: str, arguments: dict[str, Any]) -> DagOptions:
        """Options from ``@dag``'s keywords; ``where`` names the DAG and file in errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise DagDefinitionError(f"{where}: unknown @dag option(s) {unknown}.")
        values = dict(arguments)
        if isinstance(values.get("dagrun_timeout"), timedelta):
            values["dagrun_timeout"] = values["dagrun_timeout"].total_seconds()
        if isinstance(values.get("retention_days"), timedelta):
            values["retention_days"] = values["retention_days"].total_seconds() / 86400
        values["params"] = {
            name: value if isinstance(value, Param) else Param(value)
            for name, value in (values.get("params") or {}).items()
        }
        for name in ("tags", "triggers"):
            values[name] = list(values.get(name) or [])
        options = cls(**values)
        options.check(where)
        return options

    def check(self, where: str) -> None:
        if self.max_active_runs < 1 or self.max_active_tasks < 1:
            raise DagDefinitionError(f"{where}: max_active_runs and max_active_tasks must be >= 1.")
        if self.dagrun_timeout is not None and self.dagrun_timeout <= 0:
            raise DagDefinitionError(f"{where}: dagrun_timeout must be positive.")
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, datetime):
                raise DagDefinitionError(f"{where}: {name} must be a datetime.")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise DagDefinitionError(f"{where}: end_date is before start_date.")
        try:
            check_schedule(self.schedule, self.timezone)
        except ValueError as error:
            raise DagDefinitionError(f"{where}: {error}") from None
        self._check_retention(where)
        self._check_owner(where)
        check_webhooks(where, self.triggers)

    def _check_retention(self, where: str) -> None:
        days, runs = self.retention_days, self.retention_runs
        if days is not None and (
            isinstance(days, bool)
            or not isinstance(days, int | float)
            or not (days >= 0 and math.isfinite(days))
        ):
            raise DagDefinitionError(
                f"{where}: retention_days must be a number of days >= 0 or a timedelta "
                "(0 lifts the global age limit for this DAG)."
            )
        if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 0):
            raise DagDefinitionError(
                f"{where}: retention_runs must be an integer >= 0 "
                "(0 lifts the global count limit for this DAG)."
            )

    def _check_owner(self, where: str) -> None:
        owner = self.owner
        if owner is not None and (
            not isinstance(owner, str) or not 0 < len(owner) <= 100 or not owner.isprintable()
        ):
            raise DagDefinitionError(
                f"{where}: owner must be a name of 1 to 100 printable characters (a team or a "
                "person), or left out."
            )

    def to_dict(self) -> dict[str, Any]:
        schedule = self.schedule
        return {
            # A timedelta is stored as seconds; ``schedule`` keeps a readable form for lists.
            "schedule": f"every {schedule}" if isinstance(schedule, timedelta) else schedule,
            "schedule_interval": schedule.total_seconds()
            if isinstance(schedule, timedelta)
            else None,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "timezone": self.timezone,
            "catchup": self.catchup,
            "max_active_runs": self.max_active_runs,
            "max_active_tasks": self.max_active_tasks,
            "dagrun_timeout": self.dagrun_timeout,
            "params": serialize_params(self.params),
            "tags": self.tags,
            "description": self.description,
            "has_on_success": self.on_success is not None,
            "has_on_failure": self.on_failure is not None,
            "retention_days": self.retention_days,
            "retention_runs": self.retention_runs,
            # Only when set: a new key on every DAG would give each one a new version at upgrade.
            **({"owner": self.owner} if self.owner is not None else {}),
            "webhooks": [trigger.to_dict() for trigger in self.triggers],
        }
