"""A DAG's schedule in plain English for people scanning the DAGs page ("At 06:00, Monday
through Friday"), next to the expression its author wrote.

Cron expressions are described by ``cron-descriptor`` (24-hour clock, as operators read logs);
presets by the cron they stand for; ``timedelta`` schedules from their length in seconds. What
the library cannot read falls back to the expression itself, so a page never fails on a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)

from weir.schedule import ONCE, PRESETS

__all__ = ["ScheduleWords", "describe_interval", "describe_schedule"]

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


@dataclass(frozen=True, slots=True)
class ScheduleWords:
    """``words`` for everyone; ``expression`` (cron or preset) for those who know cron."""

    words: str
    expression: str | None = None


def describe_schedule(
    schedule: str | None, interval_seconds: float | None = None, timezone: str = "UTC"
) -> ScheduleWords:
    """Words for a DAG's stored schedule: ``None`` (manual), ``@once``, a preset, a cron
    expression, or a ``timedelta`` (stored as ``every …`` with its length in seconds)."""
    if interval_seconds is not None:
        return ScheduleWords(describe_interval(interval_seconds))
    if schedule is None:
        return ScheduleWords("Manual runs only")
    if schedule == ONCE:
        return ScheduleWords("Once, at the start date", schedule)
    words = _describe_cron(PRESETS.get(schedule, schedule))
    if words is None:
        return ScheduleWords(schedule, schedule)
    if timezone != "UTC":
        words = f"{words} ({timezone})"
    return ScheduleWords(words, schedule)


def describe_interval(seconds: float) -> str:
    """``Every 1 day 6 hours``: at most two units, the largest first."""
    remaining = round(seconds)
    if remaining < 1:
        return f"Every {seconds:g} seconds"
    parts: list[str] = []
    for name, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    if parts == ["1 day"] or parts == ["1 hour"] or parts == ["1 minute"]:
        return f"Every {parts[0].removeprefix('1 ')}"
    return "Every " + " ".join(parts[:2])


@lru_cache(maxsize=4096)
def _describe_cron(expression: str) -> str | None:
    """Cached: a page shows the same few expressions over and over."""
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        words: str = ExpressionDescriptor(expression, options).get_description()
    except (FormatException, MissingFieldException, WrongArgumentException):
        return None
    if words.startswith("At ") and expression.split()[2:] == ["*", "*", "*"]:
        words += ", every day"  # the terse form leaves the days implicit; say it
    return words
