"""A DAG's schedule in words, as the DAGs page shows it."""

from __future__ import annotations

import pytest

from app.dashboard.schedule_words import ScheduleWords, describe_interval, describe_schedule


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("0 6 * * 1-5", "At 06:00, Monday through Friday"),
        ("30 2 * * *", "At 02:30, every day"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("@daily", "At 00:00, every day"),
        ("@hourly", "Every hour"),
        ("@weekly", "At 00:00, only on Sunday"),
    ],
)
def test_cron_expressions_and_presets_read_as_english(schedule: str, words: str) -> None:
    assert describe_schedule(schedule) == ScheduleWords(words, schedule)


def test_manual_once_and_zones() -> None:
    assert describe_schedule(None) == ScheduleWords("Manual runs only")
    assert describe_schedule("@once").words == "Once, at the start date"
    paris = describe_schedule("0 6 * * *", timezone="Europe/Paris")
    assert paris.words == "At 06:00, every day (Europe/Paris)"


def test_what_cannot_be_described_is_shown_as_written() -> None:
    assert describe_schedule("not a cron") == ScheduleWords("not a cron", "not a cron")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (86400, "Every day"),
        (3600, "Every hour"),
        (5400, "Every 1 hour 30 minutes"),
        (90061, "Every 1 day 1 hour"),
        (30, "Every 30 seconds"),
        (0.5, "Every 0.5 seconds"),
    ],
)
def test_timedelta_schedules_in_their_two_largest_units(seconds: float, words: str) -> None:
    assert describe_interval(seconds) == words
    assert describe_schedule("every …", seconds) == ScheduleWords(words)
