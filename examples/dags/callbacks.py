"""Callbacks: react to a task's retry and failure, and to the end of the whole run.

Task callbacks run on the worker that ran the task, right after the service accepted its report;
DAG callbacks run on a worker once the run has ended. Each gets the run context (``error`` holds
the traceback, or for a DAG the failed tasks). What they print goes to the worker's log. For a
POST to a chat or paging tool on every failed run, set ``WEIR_NOTIFY_URL`` instead: the service
sends it, no code needed (docs/scheduling/callbacks.md).
"""

import logging
import random

from weir import RunContext, dag, task

log = logging.getLogger("examples.callbacks")


def warn_retry(context: RunContext) -> None:
    last_line = (context.error or "").strip().splitlines()[-1:]
    log.warning("%s try %d failed (%s); retrying", context.task_id, context.attempt, last_line)


async def page_on_call(context: RunContext) -> None:
    # An async callback is awaited on the worker's event loop: use an async HTTP client here.
    log.error("%s %s failed for good:\n%s", context.dag_id, context.task_id, context.error)


def run_succeeded(context: RunContext) -> None:
    print(f"{context.dag_id} {context.run_id} done for {context.logical_date:%Y-%m-%d}")


def run_failed(context: RunContext) -> None:
    print(f"{context.dag_id} {context.run_id} failed: {context.error}")


@dag(tags=["example"], on_success=run_succeeded, on_failure=run_failed)
def callbacks() -> None:
    """A flaky load watched by task callbacks, and the run watched by DAG callbacks."""

    @task(retries=2, retry_delay=1, on_retry=warn_retry, on_failure=page_on_call)
    def load() -> int:
        if random.random() < 0.5:
            raise ConnectionError("the warehouse did not answer")
        return 42

    @task
    def publish(rows: int) -> str:
        return f"published {rows} rows"

    publish(load())


callbacks()
