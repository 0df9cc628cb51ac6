"""When a DAG's scheduled runs fall due: pure functions of its serialized options (no I/O).

A schedule is a strictly increasing series of *slots* (UTC instants). Consecutive slots bound a
data interval ``[start, end)``; its run has ``logical_date = start`` and is created at ``end``
(``run_after``), as in Airflow. ``@once`` is the exception: one run at ``start_date``.

Cron expressions are read in the DAG's timezone, slot by wall-clock slot, and each wall-clock
slot becomes exactly one instant (the *DST rule*):

- a wall time that does not exist (the spring-forward gap) fires at the first instant after the
  gap (02:30 on the night Paris jumps from 02:00 to 03:00 fires at 03:00 CEST); if that instant
  is already a slot of the schedule, the two are one slot and fire once;
- a wall time that happens twice (the autumn repeat) fires once, at its first occurrence.

Intervals therefore stay contiguous: no data is missed or counted twice, but an interval spanning
a transition is an hour shorter or longer than its neighbours. ``timedelta`` schedules ignore the
timezone: they are absolute, ``start_date + k * interval`` in UTC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "PRESETS",
    "Interval",
    "check_schedule",
    "latest_interval",
    "manual_interval",
    "next_interval",
]

PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
ONCE = "@once"
_TICK = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A data interval and the instant from which its run may be created (all aware, UTC)."""

    start: datetime
    end: datetime
    run_after: datetime

    @property
    def logical_date(self) -> datetime:
        return self.start


class _Slots(Protocol):
    """The slots of a recurring schedule; both return None where the series ends."""

    def first_at_or_after(self, moment: datetime) -> datetime | None: ...

    def last_at_or_before(self, moment: datetime) -> datetime | None: ...


def check_schedule(schedule: str | timedelta | None, timezone: str) -> None:
    """Refuse, with a ``ValueError`` that says how to fix it, what ``next_interval`` cannot read."""
    zone(timezone)
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0):
            raise ValueError(f"schedule {schedule!r} must be a positive timedelta.")
    elif isinstance(schedule, str) and schedule != ONCE:
        expression = PRESETS.get(schedule, schedule)
        from croniter import croniter  # lazy: a DAG file's import stays light

        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            raise ValueError(
                f"schedule {schedule!r} is not a cron expression of five fields "
                f"(minute hour day month weekday) nor one of {[*PRESETS, ONCE]}."
            )
    elif schedule is not None and not isinstance(schedule, str):
        raise ValueError("schedule must be a cron string, a preset, a timedelta or None.")


def zone(name: str) -> tzinfo:
    """The IANA zone called ``name``; a ``ValueError`` naming it if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"timezone {name!r} is not an IANA zone name (such as 'UTC' or 'Europe/Paris')."
        ) from error


def next_interval(
    options: Mapping[str, Any], after: datetime | None, now: datetime, catchup: bool
) -> Interval | None:
    """The interval the next scheduled run covers, or None (manual only, or the schedule ended).

    ``after`` is where the last scheduled run's interval ended (None before the first run): the
    next interval starts at or after it, and not before ``start_date``. Without catchup the
    latest complete interval as of ``now`` is taken when it is later, so a DAG that was paused or
    down never floods; with catchup every interval is produced in turn."""
    if _is_once(options):
        once = _bound(options, "start_date") or now
        return Interval(once, once, once) if after is None else None
    slots = _slots(options)
    if slots is None:
        return None
    earliest = _bound(options, "start_date")
    lower = after if after is not None else earliest
    start: datetime | None = None
    if lower is not None:
        start = slots.first_at_or_after(lower)
    if not catchup or start is None:
        latest = _latest_start(options, slots, now)
        if latest is not None and (start is None or latest > start):
            start = latest
    return _interval_from(options, slots, start)


def latest_interval(options: Mapping[str, Any], now: datetime) -> Interval | None:
    """The last interval complete at ``now``; None if there is none, or if it begins after
    ``end_date`` (as in Airflow, an ended schedule creates nothing more, even without catchup)."""
    slots = _slots(options)
    if slots is None:
        return None
    return _interval_from(options, slots, _latest_start(options, slots, now))


def _latest_start(options: Mapping[str, Any], slots: _Slots, now: datetime) -> datetime | None:
    end = slots.last_at_or_before(now)
    start = slots.last_at_or_before(end - _TICK) if end is not None else None
    earliest = _bound(options, "start_date")
    if start is None or (earliest is not None and start < earliest):
        return None
    return start


def manual_interval(logical_date: datetime) -> Interval:
    """A triggered run covers the instant of its logical date, not a schedule slot: it may run
    while the scheduled run of the same interval runs too, and neither pretends to be the other."""
    return Interval(logical_date, logical_date, logical_date)


def _interval_from(
    options: Mapping[str, Any], slots: _Slots, start: datetime | None
) -> Interval | None:
    latest = _bound(options, "end_date")
    if start is None or (latest is not None and start > latest):
        return None
    end = slots.first_at_or_after(start + _TICK)
    return Interval(start, end, end) if end is not None else None


def _is_once(options: Mapping[str, Any]) -> bool:
    return options.get("schedule") == ONCE and not options.get("schedule_interval")


def _slots(options: Mapping[str, Any]) -> _Slots | None:
    seconds = options.get("schedule_interval")
    if seconds:
        anchor = _bound(options, "start_date") or datetime(1970, 1, 1, tzinfo=UTC)
        return _DeltaSlots(anchor, timedelta(seconds=float(seconds)))
    schedule = options.get("schedule")
    if not isinstance(schedule, str) or schedule == ONCE:
        return None
    return _CronSlots(PRESETS.get(schedule, schedule), zone(options.get("timezone") or "UTC"))


def _bound(options: Mapping[str, Any], name: str) -> datetime | None:
    """``start_date`` or ``end_date`` in UTC; a naive value is a wall time of the DAG's zone."""
    raw = options.get(name)
    if raw is None:
        return None
    value = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    if value.tzinfo is None:
        return wall_to_utc(value, zone(options.get("timezone") or "UTC"))
    return value.astimezone(UTC)


def wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """The instant of a naive wall time in ``tz`` under the DST rule of this module's docstring."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists; for a repeated wall time, fold=0 is its first occurrence
    return _end_of_gap(wall, tz)


def _end_of_gap(wall: datetime, tz: tzinfo) -> datetime:
    """The transition instant of the gap ``wall`` falls in: the first instant after the gap.

    With fold=1 a missing wall time reads with the offset after the jump, with fold=0 the one
    before, so the transition lies between the two readings; bisect to the second."""
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # before the transition
    high = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)  # at or after it
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


@dataclasses.dataclass(frozen=True)
class _DeltaSlots:
    """``anchor + k * every`` for every integer k: absolute time, no timezone involved."""

    anchor: datetime
    every: timedelta

    def first_at_or_after(self, moment: datetime) -> datetime:
        return self.anchor + -((self.anchor - moment) // self.every) * self.every

    def last_at_or_before(self, moment: datetime) -> datetime:
        return self.anchor + ((moment - self.anchor) // self.every) * self.every


@dataclasses.dataclass(frozen=True)
class _CronSlots:
    """Cron slots: croniter walks naive wall times of ``tz``; ``wall_to_utc`` places each one.

    ``wall_to_utc`` never decreases as the wall time grows, so the first (or last) wall slot whose
    instant passes the bound is the answer; the loops skip the few wall slots a DST transition
    folds onto earlier instants."""

    expression: str
    tz: tzinfo

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        from croniter import CroniterBadDateError, croniter

        # Every wall slot whose instant is >= moment lies after the wall time of ``moment - 1 s``
        # (a wall time never resolves to a later instant than its own), gap slots included.
        wall = (moment - timedelta(seconds=1)).astimezone(self.tz).replace(tzinfo=None)
        walls = croniter(self.expression, wall)
        try:
            while (instant := wall_to_utc(walls.get_next(datetime), self.tz)) < moment:
                pass
        except CroniterBadDateError:  # an expression that never matches again (``30 2 30 2 *``)
            return None
        return instant

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        from croniter import CroniterBadDateError, croniter

        local = moment.astimezone(self.tz)
        wall = local.replace(tzinfo=None)
        if local.fold:  # the repeat: wall slots up to an hour ahead fired at their first pass
            wall += local.replace(fold=0).utcoffset() - local.utcoffset()  # type: ignore[operator]
        walls = croniter(self.expression, wall + timedelta(minutes=1))
        try:
            while (instant := wall_to_utc(walls.get_prev(datetime), self.tz)) > moment:
                pass
        except CroniterBadDateError:
            return None
        return instant
