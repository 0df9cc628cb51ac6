"""Branching and trigger rules: a full reload on Sundays, an incremental one otherwise, then a
report that runs whichever path was taken, and a cleanup that runs even after a failure."""

from weir import dag, get_current_context, task


@dag(tags=["example"])
def branching():
    """``@task.branch`` picks one path; the other is skipped; ``none_failed`` joins them."""

    @task.branch
    def choose_load() -> str:
        weekday = get_current_context().logical_date.weekday()
        return "full_reload" if weekday == 6 else "incremental_load"

    @task
    def full_reload() -> int:
        print("reloading every row")
        return 1000

    @task
    def incremental_load() -> int:
        print("loading yesterday's rows")
        return 42

    @task(trigger_rule="none_failed")
    def report() -> None:
        # Runs after whichever load ran: a skipped upstream is not a failed one.
        print("loads done; the path not taken was skipped")

    @task(trigger_rule="all_done")
    def cleanup() -> None:
        # Runs once everything before it is finished, whatever their outcome.
        print("removing temporary files")

    loads = [full_reload(), incremental_load()]
    choose_load() >> loads
    finished = report()
    loads >> finished
    finished >> cleanup()


branching()
