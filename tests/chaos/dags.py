"""The DAG files chaos tests write: every task marks the ledger (tests/support/ledger.py).

Each source is built for one test's ledger path, since a DAG file cannot import the tests.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.ledger import MARK_SOURCE, shell_mark

__all__ = [
    "LOAD_TASKS",
    "load_dag",
    "long_tasks_dag",
    "one_task_dag",
    "orphaning_shell_dag",
    "poison_dag",
]

LOAD_TASKS = ("fetch", "crunch", "archive", "publish")
"""The tasks of one run of ``load_dag``: async → (sync, shell) → async."""


def _header(ledger: Path) -> str:
    return (
        "import asyncio\nimport time\n\nfrom weir import dag, task\n\n"
        f"LEDGER = {str(ledger)!r}\n{MARK_SOURCE}\n"
    )


def load_dag(ledger: Path, dag_id: str = "chaos_load", work: float = 0.2) -> str:
    """Four tasks of all three kinds per run, each working ``work`` seconds between its marks;
    the diamond shape makes the scheduler act on every finish (``retries`` stays 0: a fault
    of Weir's own must never cost a task one of its retries)."""
    start, end = shell_mark("start", ledger), shell_mark("end", ledger)
    return (
        _header(ledger)
        + f"""
WORK = {work!r}


@dag
def {dag_id}():
    @task
    async def fetch() -> int:
        mark("start")
        await asyncio.sleep(WORK)
        mark("end")
        return 1

    @task
    def crunch(n: int) -> int:
        mark("start")
        time.sleep(WORK)
        mark("end")
        return n + 1

    @task.shell
    def archive(n: int) -> str:
        return {f"{start}; sleep {work}; {end}; echo archived"!r}

    @task
    async def publish(n: int, archived: str) -> None:
        mark("start")
        await asyncio.sleep(WORK)
        mark("end")

    first = fetch()
    publish(crunch(first), archive(first))


{dag_id}()
"""
    )


def long_tasks_dag(ledger: Path, dag_id: str = "chaos_long", seconds: float = 6.0) -> str:
    """One long task of each kind, side by side, marking ``end`` only after ``seconds``: a worker
    killed meanwhile must take the unfinished side effect with it."""
    start, end = shell_mark("start", ledger), shell_mark("end", ledger)
    return (
        _header(ledger)
        + f"""
SECONDS = {seconds!r}


@dag
def {dag_id}():
    @task
    async def long_async() -> None:
        mark("start")
        await asyncio.sleep(SECONDS)
        mark("end")

    @task
    def long_sync() -> None:
        mark("start")
        time.sleep(SECONDS)
        mark("end")

    @task.shell
    def long_shell() -> str:
        return {f"{start}; sleep {seconds}; {end}"!r}

    long_async()
    long_sync()
    long_shell()


{dag_id}()
"""
    )


def one_task_dag(ledger: Path, dag_id: str = "chaos_one", seconds: float = 4.0) -> str:
    """One async task with the default ``retries=0``, marking ``end`` after ``seconds``."""
    return (
        _header(ledger)
        + f"""
@dag
def {dag_id}():
    @task
    async def only() -> None:
        mark("start")
        await asyncio.sleep({seconds!r})
        mark("end")

    only()


{dag_id}()
"""
    )


def poison_dag(ledger: Path, dag_id: str = "chaos_poison") -> str:
    """A task that kills the worker running it (``os._exit`` in the worker's own process)."""
    return (
        _header(ledger)
        + f"""
import os


@dag
def {dag_id}():
    @task
    async def poison() -> None:
        mark("start")
        os._exit(1)

    poison()


{dag_id}()
"""
    )


def orphaning_shell_dag(sleep_seconds: str, dag_id: str = "chaos_orphan") -> str:
    """A shell task whose shell exits at once, leaving ``sleep <sleep_seconds>`` behind (a
    duration unique to the test, so the test can find that process)."""
    command = f"sleep {sleep_seconds} & echo started"
    return f"""from weir import dag, task


@dag
def {dag_id}():
    @task.shell
    def orphaning() -> str:
        return {command!r}

    orphaning()


{dag_id}()
"""
