"""A daily report at 06:00 Paris time: a cron schedule in a timezone, without catchup.

Each run covers the previous day (its data interval) and starts once that day is over; the
task reads the interval from the run context. See docs/scheduling/time.md."""

from datetime import datetime

from weir import dag, get_current_context, task


@dag(
    schedule="0 6 * * *",
    start_date=datetime(2026, 1, 1),
    timezone="Europe/Paris",
    catchup=False,
    tags=["example"],
)
def daily_report():
    """Count yesterday's orders every morning; a new deployment runs only the latest day."""

    @task
    def count_orders() -> int:
        context = get_current_context()
        start, end = context.data_interval_start, context.data_interval_end
        print(f"counting orders from {start} to {end} (logical date {context.logical_date})")
        return 0

    count_orders()


daily_report()
