"""``weir.schedule``: slots, data intervals, catchup, bounds and the DST rule, without I/O."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from weir import dag, task
from weir.errors import DagDefinitionError
from weir.schedule import (
    PRESETS,
    Interval,
    check_schedule,
    latest_interval,
    manual_interval,
    next_interval,
    wall_to_utc,
)

FAR = datetime(2100, 1, 1, tzinfo=UTC)  # a "now" after every interval of these tests


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def options(schedule: Any = "@daily", **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"schedule": schedule, "timezone": "UTC", "catchup": True}
    values.update(extra)
    return values


def starts(opts: dict[str, Any], count: int, after: datetime | None = None) -> list[datetime]:
    """The first ``count`` interval starts with catchup, checking intervals are contiguous."""
    found: list[datetime] = []
    for _ in range(count):
        interval = next_interval(opts, after, FAR, catchup=True)
        assert interval is not None
        assert interval.run_after == interval.end > interval.start
        assert after is None or interval.start == after  # contiguous: nothing missed
        found.append(interval.start)
        after = interval.end
    return found


def wall(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z")


# --- presets, cron, timedelta, @once, None --------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "second"),
    [
        ("@hourly", utc(2026, 1, 1, 1)),
        ("@daily", utc(2026, 1, 2)),
        ("@weekly", utc(2026, 1, 11)),  # Sunday 4 January, then Sunday 11 January
        ("@monthly", utc(2026, 2, 1)),
        ("@yearly", utc(2027, 1, 1)),
    ],
)
def test_presets_are_their_cron_expressions(preset: str, second: datetime) -> None:
    opts = options(preset, start_date="2026-01-01T00:00:00")
    first, following = starts(opts, 2)
    assert following == second
    assert PRESETS[preset].split()[0] == "0"
    assert first <= second


def test_cron_is_read_in_the_dag_timezone_and_returned_in_utc() -> None:
    opts = options("0 6 * * *", timezone="Europe/Paris", start_date="2026-03-27T00:00:00")
    assert starts(opts, 4) == [
        utc(2026, 3, 27, 5),  # 06:00 CET
        utc(2026, 3, 28, 5),
        utc(2026, 3, 29, 4),  # 06:00 CEST after the spring jump
        utc(2026, 3, 30, 4),
    ]


def test_interval_is_between_consecutive_slots_and_run_comes_at_its_end() -> None:
    interval = next_interval(options("@daily", start_date="2026-01-01"), None, FAR, catchup=True)
    assert interval == Interval(utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 2))
    assert interval.logical_date == utc(2026, 1, 1)


def test_unaligned_start_date_begins_at_the_next_slot() -> None:
    opts = options("0 6 * * *", start_date="2026-01-01T07:00:00+00:00")
    assert starts(opts, 1) == [utc(2026, 1, 2, 6)]


def test_aware_start_date_keeps_its_own_offset() -> None:
    opts = options("@hourly", timezone="Europe/Paris", start_date="2026-01-01T00:00:00+00:00")
    assert starts(opts, 1) == [utc(2026, 1, 1)]


def test_timedelta_schedule_is_absolute_across_dst() -> None:
    # Naive start_date is a Paris wall time (12:00 CET = 11:00 UTC); a day later is 24 hours later
    # even though Paris clocks jumped in between.
    opts = options(
        "every 1 day, 0:00:00",
        schedule_interval=86400.0,
        timezone="Europe/Paris",
        start_date="2026-03-28T12:00:00",
    )
    assert starts(opts, 3) == [utc(2026, 3, 28, 11), utc(2026, 3, 29, 11), utc(2026, 3, 30, 11)]


def test_timedelta_without_start_date_is_aligned_to_the_epoch() -> None:
    opts = options("every 1:00:00", schedule_interval=3600.0)
    latest = latest_interval(opts, utc(2026, 5, 1, 10, 30))
    assert latest == Interval(utc(2026, 5, 1, 9), utc(2026, 5, 1, 10), utc(2026, 5, 1, 10))


def test_once_is_a_single_run_at_start_date() -> None:
    opts = options("@once", start_date="2026-04-01T08:00:00", timezone="Europe/Paris")
    first = next_interval(opts, None, utc(2026, 1, 1), catchup=False)
    moment = utc(2026, 4, 1, 6)
    assert first == Interval(moment, moment, moment)
    assert next_interval(opts, first.end, FAR, catchup=False) is None
    assert latest_interval(opts, FAR) is None


def test_manual_only_dag_has_no_interval() -> None:
    assert next_interval(options(None), None, FAR, catchup=True) is None
    assert latest_interval(options(None), FAR) is None


def test_manual_run_covers_its_logical_date() -> None:
    moment = utc(2026, 2, 3, 4, 5)
    assert manual_interval(moment) == Interval(moment, moment, moment)


def test_cron_that_never_matches_again_ends_the_schedule() -> None:
    assert next_interval(options("0 0 30 2 *", start_date="2026-01-01"), None, FAR, True) is None


# --- catchup, start_date, end_date ----------------------------------------------------------


def test_catchup_off_takes_only_the_latest_complete_interval() -> None:
    opts = options("@daily", start_date="2020-01-01T00:00:00")
    now = utc(2026, 6, 10, 13, 45)
    expected = Interval(utc(2026, 6, 9), utc(2026, 6, 10), utc(2026, 6, 10))
    assert next_interval(opts, None, now, catchup=False) == expected
    assert next_interval(opts, utc(2021, 1, 1), now, catchup=False) == expected


def test_catchup_off_on_a_boundary_takes_the_interval_that_just_ended() -> None:
    opts = options("@daily", start_date="2020-01-01T00:00:00")
    interval = next_interval(opts, None, utc(2026, 6, 10), catchup=False)
    assert interval is not None and interval.start == utc(2026, 6, 9)


def test_catchup_off_after_the_latest_gives_the_coming_interval() -> None:
    opts = options("@daily", start_date="2020-01-01T00:00:00")
    interval = next_interval(opts, utc(2026, 6, 10), utc(2026, 6, 10, 13), catchup=False)
    assert interval == Interval(utc(2026, 6, 10), utc(2026, 6, 11), utc(2026, 6, 11))


def test_catchup_on_continues_after_the_last_interval() -> None:
    opts = options("@daily", start_date="2020-01-01T00:00:00")
    assert starts(opts, 3) == [utc(2020, 1, 1), utc(2020, 1, 2), utc(2020, 1, 3)]
    interval = next_interval(opts, utc(2024, 2, 29), utc(2026, 1, 1), catchup=True)
    assert interval is not None and interval.start == utc(2024, 2, 29)


def test_start_date_in_the_future_waits_for_it_either_way() -> None:
    opts = options("@daily", start_date="2027-01-01T00:00:00")
    for catchup in (False, True):
        interval = next_interval(opts, None, utc(2026, 6, 1), catchup=catchup)
        assert interval == Interval(utc(2027, 1, 1), utc(2027, 1, 2), utc(2027, 1, 2))


def test_no_start_date_starts_with_the_latest_interval_even_with_catchup() -> None:
    interval = next_interval(options("@hourly"), None, utc(2026, 6, 1, 10, 5), catchup=True)
    assert interval is not None and interval.start == utc(2026, 6, 1, 9)


def test_end_date_is_the_last_logical_date() -> None:
    opts = options("@daily", start_date="2026-01-01T00:00:00", end_date="2026-01-03T00:00:00")
    assert starts(opts, 3) == [utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 3)]
    assert next_interval(opts, utc(2026, 1, 4), FAR, catchup=True) is None
    assert next_interval(opts, None, FAR, catchup=False) is None  # latest is past end_date


# --- DST: one run per wall-clock slot -------------------------------------------------------

# (zone, cron, start_date, expected interval starts as local wall times)
DST_CASES = [
    pytest.param(
        "Europe/Paris",
        "30 2 * * *",
        "2026-03-28T00:00:00",
        ["03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"],
        id="paris-spring-daily-missing-time-fires-at-end-of-gap",
    ),
    pytest.param(
        "Europe/Paris",
        "0 * * * *",
        "2026-03-29T01:00:00",
        ["03-29 01:00+0100", "03-29 03:00+0200", "03-29 04:00+0200"],
        id="paris-spring-hourly-missing-hour-merges-with-the-next",
    ),
    pytest.param(
        "Europe/Paris",
        "30 2 * * *",
        "2026-10-24T00:00:00",
        ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100"],
        id="paris-autumn-daily-repeated-time-fires-once-first",
    ),
    pytest.param(
        "Europe/Paris",
        "0 * * * *",
        "2026-10-25T01:00:00",
        ["10-25 01:00+0200", "10-25 02:00+0200", "10-25 03:00+0100", "10-25 04:00+0100"],
        id="paris-autumn-hourly-repeated-hour-fires-once",
    ),
    pytest.param(
        "America/New_York",
        "30 2 * * *",
        "2026-03-07T00:00:00",
        ["03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:30-0400"],
        id="new-york-spring-daily",
    ),
    pytest.param(
        "America/New_York",
        "0 * * * *",
        "2026-03-08T01:00:00",
        ["03-08 01:00-0500", "03-08 03:00-0400", "03-08 04:00-0400"],
        id="new-york-spring-hourly",
    ),
    pytest.param(
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T00:00:00",
        ["10-31 01:30-0400", "11-01 01:30-0400", "11-02 01:30-0500"],
        id="new-york-autumn-daily-in-the-repeated-hour",
    ),
    pytest.param(
        "America/New_York",
        "30 2 * * *",
        "2026-10-31T00:00:00",
        ["10-31 02:30-0400", "11-01 02:30-0500", "11-02 02:30-0500"],
        id="new-york-autumn-daily-after-the-repeat",
    ),
    pytest.param(
        "America/New_York",
        "0 * * * *",
        "2026-11-01T00:00:00",
        ["11-01 00:00-0400", "11-01 01:00-0400", "11-01 02:00-0500", "11-01 03:00-0500"],
        id="new-york-autumn-hourly",
    ),
]


@pytest.mark.parametrize(("tz", "cron", "start", "expected"), DST_CASES)
def test_dst_transitions_give_one_run_per_wall_clock_slot(
    tz: str, cron: str, start: str, expected: list[str]
) -> None:
    opts = options(cron, timezone=tz, start_date=start)
    assert [wall(s, tz) for s in starts(opts, len(expected))] == expected


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
def test_a_whole_year_of_a_daily_cron_fires_once_per_local_day(tz: str) -> None:
    opts = options("30 2 * * *", timezone=tz, start_date="2026-01-01T00:00:00")
    days = [s.astimezone(ZoneInfo(tz)).date() for s in starts(opts, 365)]
    assert days == [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]


@pytest.mark.parametrize(
    ("tz", "spring", "autumn"),
    [
        ("Europe/Paris", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_an_hourly_cron_fires_once_per_existing_wall_hour(
    tz: str, spring: date, autumn: date
) -> None:
    opts = options("0 * * * *", timezone=tz, start_date="2026-01-01T00:00:00")
    fired = starts(opts, 365 * 24 - 1)  # every hour of 2026 less the one the spring skips
    per_day = Counter(s.astimezone(ZoneInfo(tz)).date() for s in fired)
    assert per_day[spring] == 23  # the missing hour's slot is the next hour's
    assert per_day[autumn] == 24  # the repeated hour runs once
    assert {n for d, n in per_day.items() if d not in (spring, autumn)} == {24}
    assert len(set(fired)) == len(fired)


@pytest.mark.parametrize(
    ("tz", "repeat_second_pass", "first_pass"),
    [
        ("Europe/Paris", utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", utc(2026, 11, 1, 6, 40), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_latest_interval_during_the_repeat_ends_at_the_first_pass(
    tz: str, repeat_second_pass: datetime, first_pass: datetime
) -> None:
    cron = "30 2 * * *" if tz == "Europe/Paris" else "30 1 * * *"
    opts = options(cron, timezone=tz, start_date="2026-01-01T00:00:00")
    latest = latest_interval(opts, repeat_second_pass)
    assert latest is not None and latest.end == first_pass


def test_a_wall_time_in_the_gap_is_the_first_instant_after_it() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert wall_to_utc(datetime(2026, 3, 29, 2, 30), paris) == utc(2026, 3, 29, 1)
    assert wall_to_utc(datetime(2026, 10, 25, 2, 30), paris) == utc(2026, 10, 25, 0, 30)
    assert wall_to_utc(datetime(2026, 7, 1, 12), paris) == utc(2026, 7, 1, 10)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "timezone", "message"),
    [
        ("61 * * * *", "UTC", "five fields"),
        ("* * * * * *", "UTC", "five fields"),
        ("@fortnightly", "UTC", "five fields"),
        (timedelta(0), "UTC", "positive"),
        ("@daily", "Mars/Olympus", "IANA"),
    ],
)
def test_check_schedule_refuses_what_it_cannot_read(
    schedule: str | timedelta, timezone: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_schedule(schedule, timezone)


@pytest.mark.parametrize("schedule", [None, "@once", "*/5 * * * *", timedelta(hours=1), *PRESETS])
def test_check_schedule_accepts_every_kind(schedule: str | timedelta | None) -> None:
    check_schedule(schedule, "Europe/Paris")


def test_a_bad_schedule_is_a_dag_definition_error() -> None:
    @dag(schedule="every day at noon")
    def bad() -> None:
        task(lambda: None).override(task_id="t")()

    with pytest.raises(DagDefinitionError, match=r"'bad'.*five fields"):
        bad()


def test_a_timedelta_schedule_serializes_to_json() -> None:
    @dag(schedule=timedelta(hours=6), start_date=datetime(2026, 1, 1))
    def every_six_hours() -> None:
        task(lambda: None).override(task_id="t")()

    serialized = every_six_hours().to_dict()
    assert json.loads(json.dumps(serialized)) == serialized
    assert (serialized["schedule"], serialized["schedule_interval"]) == ("every 6:00:00", 21600.0)
    assert starts(serialized, 2) == [utc(2026, 1, 1), utc(2026, 1, 1, 6)]
