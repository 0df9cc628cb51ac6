"""``@task.sensor``: its options, and how a poke's return value becomes an outcome, in the event
loop and in the real process pool (end to end: tests/integration/test_sensors.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_runners import claim_for, write_dag
from weir import dag, task
from weir.errors import DagDefinitionError
from weir.sensors import PokeReturnValue, read_poke
from weir.task import Task
from weir.task_options import DEFAULT_SENSOR_TIMEOUT
from workers.invocation import invoke, invoke_in_loop
from workers.outcome import Outcome
from workers.runners import Runner


def build_one(function: Any) -> Task:
    @dag
    def holder() -> None:
        function()

    built = holder()
    (only,) = built.tasks.values()
    result: Task = only
    return result


def test_sensor_options_are_checked_and_serialized() -> None:
    @task.sensor(poke_interval=timedelta(seconds=30), timeout=600, soft_fail=True)
    def ready() -> bool:
        return True

    serialized = build_one(ready).to_dict()

    assert serialized["sensor"] is True
    assert serialized["poke_interval"] == 30.0
    assert serialized["timeout"] == 600
    assert serialized["soft_fail"] is True


def test_a_sensor_without_a_timeout_gives_up_after_seven_days() -> None:
    @task.sensor
    def ready() -> bool:
        return True

    assert ready.options.timeout == DEFAULT_SENSOR_TIMEOUT == 7 * 24 * 3600
    assert ready.options.poke_interval == 60.0


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda: task(poke_interval=5), "options of @task.sensor"),
        (lambda: task(soft_fail=True), "options of @task.sensor"),
        (lambda: task.sensor(poke_interval=0), "poke_interval must be positive"),
        (lambda: task.sensor(timeout=-1), "timeout must be positive"),
    ],
)
def test_invalid_sensor_options_are_refused(decorate: Any, message: str) -> None:
    with pytest.raises(DagDefinitionError, match=message):
        decorate()


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (True, Outcome("success", result=True)),
        ({"rows": 3}, Outcome("success", result={"rows": 3})),
        (False, Outcome("reschedule")),
        (None, Outcome("reschedule")),
        ([], Outcome("reschedule")),
        (PokeReturnValue(True, 0), Outcome("success", result=0)),
        (PokeReturnValue(False, "ignored"), Outcome("reschedule")),
    ],
)
def test_a_poke_is_done_when_it_returns_something_truthy(returned: Any, expected: Outcome) -> None:
    assert Outcome.of_poke(returned) == expected


def test_poke_return_value_reads_like_its_answer() -> None:
    assert not PokeReturnValue(False)
    assert read_poke(PokeReturnValue(True, [1])) == (True, [1])


def test_invocation_turns_a_sensors_falsy_answer_into_a_reschedule(tmp_path: Path) -> None:
    @task.sensor
    def not_yet() -> bool:
        return False

    @task
    def plain() -> bool:
        return False

    write_dag(tmp_path, "holder.py", "")
    claim = claim_for(tmp_path, "holder.py", "not_yet", dag_id="holder")
    assert invoke(build_one(not_yet), claim) == Outcome("reschedule")
    assert invoke(build_one(plain), claim) == Outcome("success", result=False)


async def test_an_async_sensor_is_rescheduled_too(tmp_path: Path) -> None:
    @task.sensor
    async def not_yet() -> bool:
        return False

    write_dag(tmp_path, "holder.py", "")
    claim = claim_for(tmp_path, "holder.py", "not_yet", dag_id="holder")
    assert await invoke_in_loop(build_one(not_yet), claim) == Outcome("reschedule")


SYNC_SENSOR = """
from weir import dag, task
from weir.sensors import PokeReturnValue


@dag
def sensing():
    @task.sensor(poke_interval=1)
    def not_yet() -> bool:
        return False

    @task.sensor(poke_interval=1)
    def done() -> PokeReturnValue:
        return PokeReturnValue(True, 0)

    not_yet()
    done()


sensing()
"""


async def test_a_sync_sensor_in_the_process_pool(tmp_path: Path) -> None:
    write_dag(tmp_path, "sensing.py", SYNC_SENSOR)
    runner = Runner(tmp_path, concurrency=1)
    try:
        sink = _Sink()
        not_yet = claim_for(tmp_path, "sensing.py", "not_yet", dag_id="sensing")
        done = claim_for(tmp_path, "sensing.py", "done", dag_id="sensing")
        assert await runner.run(not_yet, sink) == Outcome("reschedule")
        assert await runner.run(done, sink) == Outcome("success", result=0)
    finally:
        await runner.aclose()


class _Sink:
    def write(self, text: str) -> None:
        return None
