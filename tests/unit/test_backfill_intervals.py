"""Which intervals a backfill runs: the schedule's, with a logical date in the range, complete by
now, within the DAG's own bounds, and at most ``MAX_INTERVALS`` of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.scheduler.backfills import MAX_INTERVALS, backfill_intervals
from weir.errors import InvalidRequest

NOW = datetime(2024, 3, 15, 12, tzinfo=UTC)
DAILY = {"schedule": "@daily", "timezone": "UTC", "start_date": "2024-03-01T00:00:00+00:00"}


def utc(day: int, month: int = 3) -> datetime:
    return datetime(2024, month, day, tzinfo=UTC)


def test_logical_dates_in_the_range_both_ends_included() -> None:
    intervals = backfill_intervals(DAILY, utc(5), utc(7), NOW)
    assert [(i.start, i.end) for i in intervals] == [
        (utc(5), utc(6)),
        (utc(6), utc(7)),
        (utc(7), utc(8)),
    ]


def test_a_start_between_slots_begins_at_the_next_slot() -> None:
    intervals = backfill_intervals(DAILY, utc(5) + timedelta(hours=1), utc(7), NOW)
    assert [i.start for i in intervals] == [utc(6), utc(7)]


def test_bounded_by_start_date_end_date_and_now() -> None:
    assert backfill_intervals(DAILY, utc(1, 1), utc(2), NOW)[0].start == utc(1)
    ended = {**DAILY, "end_date": "2024-03-03T00:00:00+00:00"}
    assert [i.start for i in backfill_intervals(ended, utc(1), utc(10), NOW)] == [
        utc(1),
        utc(2),
        utc(3),
    ]
    # Today's interval ends tomorrow: not complete, not backfilled.
    assert backfill_intervals(DAILY, utc(14), utc(20), NOW)[-1].start == utc(14)


def test_the_dags_timezone_places_the_slots() -> None:
    paris = {"schedule": "@daily", "timezone": "Europe/Paris"}
    [first, second] = backfill_intervals(
        paris, utc(30) - timedelta(hours=2), utc(31), NOW.replace(month=4)
    )
    assert first.start == datetime(2024, 3, 29, 23, tzinfo=UTC)
    assert second.start == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert second.end - second.start == timedelta(hours=23)  # the spring-forward night


def test_no_schedule_has_nothing_to_backfill() -> None:
    assert backfill_intervals({"schedule": None}, utc(1), utc(10), NOW) == []
    assert backfill_intervals({"schedule": "@once", "start_date": None}, utc(1), utc(10), NOW) == []


def test_more_than_the_limit_is_refused() -> None:
    minutely = {"schedule": "* * * * *", "timezone": "UTC"}
    end = utc(1) + timedelta(minutes=MAX_INTERVALS - 1)
    assert len(backfill_intervals(minutely, utc(1), end, NOW)) == MAX_INTERVALS
    with pytest.raises(InvalidRequest, match="split it"):
        backfill_intervals(minutely, utc(1), end + timedelta(minutes=1), NOW)
