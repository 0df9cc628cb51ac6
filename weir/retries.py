"""How long a failed attempt waits before the next one: the retry backoff, pure.

Airflow's rule without its jitter, so a user (and a test) can predict exactly when a retry runs:
a fixed ``retry_delay``, or with ``retry_exponential_backoff`` a delay that doubles with each try
(``retry_delay * 2 ** (attempt - 1)``). ``max_retry_delay`` caps the delay in both cases; an
exponential delay without a cap stops growing at ``DEFAULT_MAX_EXPONENTIAL_DELAY`` (one day, as
Airflow's ``max_task_retry_delay`` default, or ``retry_delay`` if that is longer), so a task with
many retries never waits for years.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_EXPONENTIAL_DELAY", "retry_delay_for"]

DEFAULT_MAX_EXPONENTIAL_DELAY = 24 * 60 * 60.0
_MAX_DOUBLINGS = 64  # far past any cap; keeps 2 ** n a float that cannot overflow


def retry_delay_for(
    attempt: int,
    retry_delay: float,
    exponential: bool = False,
    max_delay: float | None = None,
) -> float:
    """Seconds to wait after try number ``attempt`` (1 for the first try) failed."""
    delay = retry_delay
    if exponential:
        doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        delay = retry_delay * 2.0**doublings
        if max_delay is None:
            max_delay = max(DEFAULT_MAX_EXPONENTIAL_DELAY, retry_delay)
    if max_delay is not None:
        delay = min(delay, max_delay)
    return max(delay, 0.0)
