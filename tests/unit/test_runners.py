"""The runners on real DAG files: sync tasks in the real process pool, async tasks in the event
loop, shell tasks as real subprocesses."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import textwrap
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from weir.messages import ClaimAccepted, TaskKind
from workers.outcome import Outcome
from workers.runners import Runner

DAG_FILE = """
import asyncio
import logging
import os
import time
from datetime import datetime

from weir import dag, get_current_context, task

log = logging.getLogger("user.tasks")


@dag(start_date=datetime(2026, 1, 1))
def pipeline():
    @task
    def extract() -> list[int]:
        context = get_current_context()
        print(f"extracting for {context.run_id} attempt {context.attempt}")
        log.warning("a warning from extract")
        return [1, 2, 3]

    @task
    def total(rows: list[int]) -> int:
        return sum(rows)

    @task
    def explode() -> None:
        raise ValueError("the source is empty")

    @task
    def not_json() -> object:
        return {1, 2}

    @task
    def crash() -> None:
        os._exit(3)

    @task
    def stall() -> None:
        print("stalling", flush=True)
        time.sleep(30)

    @task
    async def fetch(rows: list[int]) -> dict[str, int]:
        await asyncio.sleep(0)
        print("fetched", len(rows))
        return {"count": len(rows), "run": get_current_context().run_id == "run-1"}

    @task
    async def snooze() -> None:
        print("snoozing")
        await asyncio.sleep(30)

    @task
    async def explode_async() -> None:
        raise RuntimeError("async failure")

    @task
    async def not_json_async() -> float:
        return float("nan")

    @task.shell
    def greet(rows: list[int]) -> str:
        return f"echo hello {len(rows)}; echo to-stderr >&2; echo $WEIR_TASK_ID; echo"

    @task.shell
    def fail() -> str:
        return "echo partial; exit 3"

    @task.shell
    def sleepy() -> str:
        return "sleep 30"

    @task.shell
    def no_command() -> str:
        return "  "

    rows = extract()
    total(rows)
    fetch(rows)
    greet(rows)
    explode()
    not_json()
    crash()
    stall()
    snooze()
    explode_async()
    not_json_async()
    fail()
    sleepy()
    no_command()


pipeline()
"""

PING_PONG = """
import asyncio
from datetime import datetime

from weir import dag, task

turns: dict[str, asyncio.Event] = {}


@dag(start_date=datetime(2026, 1, 1))
def chat():
    @task
    async def speak(me: str, other: str) -> str:
        for n in range(3):
            print(f"{me} line {n}")
            turns[other] = turns.get(other) or asyncio.Event()
            turns[other].set()
            turns[me] = turns.get(me) or asyncio.Event()
            await turns[me].wait()
            turns[me].clear()
        turns[other].set()
        return me

    speak.override(task_id="alice")("alice", "bob")
    speak.override(task_id="bob")("bob", "alice")


chat()
"""


class Sink:
    """Collects an attempt's log text (from any thread, as the real log buffer allows)."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()
        self._written = asyncio.Event()

    def write(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)
        self._written.set()  # only awaited by tests whose writes come from the loop thread

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def wait_for(self, fragment: str) -> None:
        while fragment not in self.text:
            self._written.clear()
            await self._written.wait()


def write_dag(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def claim_for(
    folder: Path,
    fileloc: str,
    task_id: str,
    *,
    dag_id: str = "pipeline",
    kind: TaskKind = TaskKind.PYTHON,
    inputs: dict[str, object] | None = None,
    attempt: int = 1,
) -> ClaimAccepted:
    return ClaimAccepted(
        task_instance_id=7,
        attempt=attempt,
        dag_id=dag_id,
        run_id="run-1",
        task_id=task_id,
        fileloc=fileloc,
        file_hash=hashlib.sha256((folder / fileloc).read_bytes()).hexdigest(),
        kind=kind,
        inputs=inputs or {},
        logical_date=datetime(2026, 1, 2, tzinfo=UTC),
        heartbeat_interval=5.0,
        lease_seconds=30.0,
    )


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    write_dag(folder, "pipeline.py", DAG_FILE)
    return folder


@pytest.fixture
async def runner(dags_folder: Path) -> AsyncIterator[Runner]:
    runner = Runner(dags_folder, concurrency=2)
    try:
        yield runner
    finally:
        await runner.aclose()


async def run(runner: Runner, claim: ClaimAccepted) -> tuple[Outcome, str]:
    sink = Sink()
    outcome = await runner.run(claim, sink)
    return outcome, sink.text


async def test_sync_task_runs_in_the_pool_and_its_output_reaches_the_log(
    runner: Runner, dags_folder: Path
) -> None:
    outcome, log = await run(runner, claim_for(dags_folder, "pipeline.py", "extract", attempt=2))

    assert outcome == Outcome("success", result=[1, 2, 3])
    assert "extracting for run-1 attempt 2\n" in log
    assert "WARNING user.tasks: a warning from extract" in log


async def test_sync_task_receives_upstream_results(runner: Runner, dags_folder: Path) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "total", inputs={"extract": [4, 5]})

    outcome, _ = await run(runner, claim)

    assert outcome == Outcome("success", result=9)


async def test_sync_tasks_run_in_parallel_processes(runner: Runner, dags_folder: Path) -> None:
    claims = [claim_for(dags_folder, "pipeline.py", "extract") for _ in range(4)]

    results = await asyncio.gather(*(run(runner, c) for c in claims))

    assert all(outcome.result == [1, 2, 3] for outcome, _ in results)
    assert all(log.count("extracting") == 1 for _, log in results)


async def test_async_task_runs_in_the_loop_with_its_output_captured(
    runner: Runner, dags_folder: Path
) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "fetch", inputs={"extract": [1, 2]})

    outcome, log = await run(runner, claim)

    assert outcome == Outcome("success", result={"count": 2, "run": True})
    assert log == "fetched 2\n"


async def test_shell_task_streams_output_and_returns_the_last_line(
    runner: Runner, dags_folder: Path
) -> None:
    claim = claim_for(
        dags_folder, "pipeline.py", "greet", kind=TaskKind.SHELL, inputs={"extract": [1]}
    )

    outcome, log = await run(runner, claim)

    assert outcome == Outcome("success", result="greet")
    assert "hello 1\n" in log
    assert "to-stderr\n" in log
    assert "Command exited with return code 0" in log


async def test_shell_task_with_a_non_zero_exit_fails(runner: Runner, dags_folder: Path) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "fail", kind=TaskKind.SHELL)

    outcome, log = await run(runner, claim)

    assert outcome == Outcome.failed("The command exited with code 3.")
    assert "partial\n" in log


async def test_shell_task_without_a_command_fails(runner: Runner, dags_folder: Path) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "no_command", kind=TaskKind.SHELL)

    outcome, _ = await run(runner, claim)

    assert outcome.state == "failed"
    assert "must return the command to run" in (outcome.error or "")


async def test_cancelling_a_shell_task_stops_its_process(runner: Runner, dags_folder: Path) -> None:
    sink = Sink()
    claim = claim_for(dags_folder, "pipeline.py", "sleepy", kind=TaskKind.SHELL)
    attempt = asyncio.create_task(runner.run(claim, sink))
    await sink.wait_for("Running command")

    attempt.cancel()

    async with asyncio.timeout(5):  # far less than the command's 30 s
        with pytest.raises(asyncio.CancelledError):
            await attempt


@pytest.mark.parametrize(
    ("task_id", "message"),
    [("explode", "ValueError: the source is empty"), ("explode_async", "RuntimeError: async")],
)
async def test_a_raising_task_fails_with_its_traceback(
    runner: Runner, dags_folder: Path, task_id: str, message: str
) -> None:
    outcome, _ = await run(runner, claim_for(dags_folder, "pipeline.py", task_id))

    assert outcome.state == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("Traceback (most recent call last):")
    assert message in outcome.error


@pytest.mark.parametrize(("task_id", "kind"), [("not_json", "set"), ("not_json_async", "float")])
async def test_a_return_value_that_is_not_json_fails_the_attempt(
    runner: Runner, dags_folder: Path, task_id: str, kind: str
) -> None:
    outcome, _ = await run(runner, claim_for(dags_folder, "pipeline.py", task_id))

    assert outcome.state == "failed"
    assert f"returned a value of type {kind} that is not JSON-serialisable" in (outcome.error or "")


async def test_a_dying_pool_process_fails_the_attempt_and_the_pool_recovers(
    runner: Runner, dags_folder: Path
) -> None:
    outcome, _ = await run(runner, claim_for(dags_folder, "pipeline.py", "crash"))

    assert outcome.state == "failed"
    assert "died before it returned" in (outcome.error or "")
    claim = claim_for(dags_folder, "pipeline.py", "total", inputs={"extract": [2]})
    again, _ = await run(runner, claim)
    assert again == Outcome("success", result=2)


async def test_closing_the_runner_stops_an_abandoned_sync_task(
    runner: Runner, dags_folder: Path
) -> None:
    sink = Sink()
    attempt = asyncio.create_task(runner.run(claim_for(dags_folder, "pipeline.py", "stall"), sink))
    await sink.wait_for("stalling")  # the pool's output reaches the sink on the loop thread
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt

    async with asyncio.timeout(10):  # far less than the task's 30 s
        await runner.aclose()


async def test_concurrent_async_attempts_keep_their_logs_apart(
    runner: Runner, dags_folder: Path
) -> None:
    write_dag(dags_folder, "chat.py", PING_PONG)
    alice = claim_for(dags_folder, "chat.py", "alice", dag_id="chat")
    bob = claim_for(dags_folder, "chat.py", "bob", dag_id="chat")

    (alice_outcome, alice_log), (bob_outcome, bob_log) = await asyncio.gather(
        run(runner, alice), run(runner, bob)
    )

    assert (alice_outcome.result, bob_outcome.result) == ("alice", "bob")
    assert alice_log == "alice line 0\nalice line 1\nalice line 2\n"
    assert bob_log == "bob line 0\nbob line 1\nbob line 2\n"


async def test_a_task_missing_from_the_dag_file_fails_with_a_clear_message(
    runner: Runner, dags_folder: Path
) -> None:
    outcome, _ = await run(runner, claim_for(dags_folder, "pipeline.py", "vanished"))

    assert outcome.state == "failed"
    assert "has no task 'vanished'" in (outcome.error or "")


async def test_a_missing_dag_file_fails_with_a_clear_message(
    runner: Runner, dags_folder: Path
) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "extract").model_copy(
        update={"fileloc": "gone.py"}
    )

    outcome, _ = await run(runner, claim)

    assert "gone.py is not in this worker's DAGs folder" in (outcome.error or "")


async def test_a_changed_dag_file_runs_as_it_is_on_disk_with_a_warning(
    runner: Runner, dags_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "fetch", inputs={"extract": [1]})
    write_dag(dags_folder, "pipeline.py", DAG_FILE.replace('print("fetched"', 'print("new"'))

    with caplog.at_level(logging.WARNING, logger="workers"):
        outcome, log = await run(runner, claim)

    assert outcome.state == "success"
    assert log == "new 1\n"
    assert "differs from the version the service parsed" in caplog.text


async def test_a_version_once_loaded_is_not_read_again_and_a_new_version_is(
    runner: Runner, dags_folder: Path
) -> None:
    claim = claim_for(dags_folder, "pipeline.py", "fetch", inputs={"extract": [1]})
    await run(runner, claim)
    write_dag(dags_folder, "pipeline.py", DAG_FILE.replace('print("fetched"', 'print("new"'))

    _, same_version = await run(runner, claim)
    newer = claim_for(dags_folder, "pipeline.py", "fetch", inputs={"extract": [1]})
    _, new_version = await run(runner, newer)

    assert same_version == "fetched 1\n"  # what the service named, from memory
    assert new_version == "new 1\n"
    assert (await runner.load_task(claim)).function is not (await runner.load_task(newer)).function


@pytest.mark.parametrize(
    ("task_id", "kind"),
    [("stall", TaskKind.PYTHON), ("snooze", TaskKind.PYTHON), ("sleepy", TaskKind.SHELL)],
)
async def test_a_task_past_its_timeout_is_stopped_and_fails(
    runner: Runner, dags_folder: Path, task_id: str, kind: TaskKind
) -> None:
    claim = claim_for(dags_folder, "pipeline.py", task_id, kind=kind)
    claim = claim.model_copy(update={"timeout": 0.5})

    async with asyncio.timeout(10):  # far less than the task's 30 s
        outcome, log = await run(runner, claim)

    assert outcome == Outcome.failed("The attempt timed out after 0.5 s (the task's timeout).")
    assert "timed out after 0.5 s (the task's timeout). It was stopped." in log


async def test_sync_tasks_stopped_at_their_timeout_free_their_slots(
    runner: Runner, dags_folder: Path
) -> None:
    stalls = [
        claim_for(dags_folder, "pipeline.py", "stall").model_copy(update={"timeout": 0.5})
        for _ in range(2)  # as many as the runner's concurrency
    ]
    async with asyncio.timeout(10):
        stopped = await asyncio.gather(*(run(runner, claim) for claim in stalls))
        outcome, _ = await run(runner, claim_for(dags_folder, "pipeline.py", "extract"))

    assert all(outcome.state == "failed" for outcome, _ in stopped)
    assert outcome == Outcome("success", result=[1, 2, 3])
