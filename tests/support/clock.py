"""A clock tests move by hand, so that schedules fall due without waiting real time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["MovableClock"]


class MovableClock:
    """Stands still until moved (the ``weir.clock.Clock`` protocol)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._now += delta
