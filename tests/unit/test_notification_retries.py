"""When the failure notifier tries a summary again, and when it gives up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.notifications import backoff, retry_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_from_half_a_second_up_to_a_minute() -> None:
    assert [backoff(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 32, 60]
    assert backoff(10_000) == 60


def test_the_next_try_waits_the_backoff() -> None:
    now = T0 + timedelta(seconds=10)
    assert retry_at(T0, 3, now, give_up_after=600) == now + timedelta(seconds=2)


def test_the_last_try_falls_on_the_deadline_and_then_it_gives_up() -> None:
    deadline = T0 + timedelta(seconds=600)
    assert retry_at(T0, 9, deadline - timedelta(seconds=5), give_up_after=600) == deadline
    assert retry_at(T0, 10, deadline, give_up_after=600) is None
