"""The retry backoff (``weir.retries``): fixed, doubling, capped, and never overflowing."""

from __future__ import annotations

import pytest

from weir.retries import DEFAULT_MAX_EXPONENTIAL_DELAY, retry_delay_for


@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_a_fixed_delay_is_the_same_after_every_try(attempt: int) -> None:
    assert retry_delay_for(attempt, 30.0) == 30.0


def test_an_exponential_delay_doubles_with_each_try() -> None:
    delays = [retry_delay_for(attempt, 10.0, exponential=True) for attempt in range(1, 6)]

    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0]


def test_max_retry_delay_caps_an_exponential_delay() -> None:
    delays = [retry_delay_for(n, 10.0, exponential=True, max_delay=45.0) for n in range(1, 5)]

    assert delays == [10.0, 20.0, 40.0, 45.0]


def test_max_retry_delay_caps_a_fixed_delay_too() -> None:
    assert retry_delay_for(1, 90.0, max_delay=60.0) == 60.0


def test_an_uncapped_exponential_delay_stops_at_one_day_and_never_overflows() -> None:
    assert retry_delay_for(40, 1.0, exponential=True) == DEFAULT_MAX_EXPONENTIAL_DELAY
    assert retry_delay_for(10_000, 1.0, exponential=True) == DEFAULT_MAX_EXPONENTIAL_DELAY


def test_a_base_delay_longer_than_a_day_is_not_shortened_by_the_default_cap() -> None:
    assert retry_delay_for(1, 2 * DEFAULT_MAX_EXPONENTIAL_DELAY, exponential=True) == (
        2 * DEFAULT_MAX_EXPONENTIAL_DELAY
    )


def test_a_zero_delay_stays_zero() -> None:
    assert retry_delay_for(3, 0.0, exponential=True) == 0.0
