"""The DAG page's "next runs": the planned interval and the ones the schedule puts after it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from app.dashboard.next_runs import upcoming_intervals
from weir.schedule import Interval, next_interval

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _planned(options: dict[str, object]) -> Interval | None:
    return next_interval(options, None, NOW, catchup=False)


def test_a_daily_cron_lists_five_consecutive_days_in_its_timezone() -> None:
    options = {"schedule": "0 6 * * *", "timezone": "Europe/Paris", "start_date": None}

    found = upcoming_intervals(options, _planned(options), NOW)

    assert len(found) == 5
    assert [i.start.astimezone(UTC).hour for i in found] == [5] * 5  # 06:00 CET
    for before, after in itertools.pairwise(found):
        assert after.start == before.end
        assert after.start - before.start == timedelta(days=1)


def test_a_timedelta_schedule_steps_by_its_interval() -> None:
    options = {"schedule": "every 2:00:00", "schedule_interval": 7200.0, "start_date": None}

    found = upcoming_intervals(options, _planned(options), NOW, count=3)

    assert [i.run_after - found[0].run_after for i in found] == [
        timedelta(0),
        timedelta(hours=2),
        timedelta(hours=4),
    ]


def test_an_end_date_once_or_nothing_planned_stops_the_list() -> None:
    ending = {"schedule": "@daily", "start_date": None, "end_date": "2026-03-11T00:00:00+00:00"}
    planned = Interval(
        datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC),
        datetime(2026, 3, 11, tzinfo=UTC),
    )  # fmt: skip
    assert [i.start.day for i in upcoming_intervals(ending, planned, NOW)] == [10, 11]

    once_at = datetime(2026, 4, 1, tzinfo=UTC)
    once = {"schedule": "@once", "start_date": once_at.isoformat()}
    assert upcoming_intervals(once, Interval(once_at, once_at, once_at), NOW) == [
        Interval(once_at, once_at, once_at)
    ]

    assert upcoming_intervals({"schedule": None}, None, NOW) == []
