"""The DAG authoring SDK: what ``@dag`` and ``@task`` build, and what they refuse (and how they say
so: every refusal names the DAG, the task and the file, so that the import error is actionable)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from weir import Dag, dag, task
from weir.dag import collect_dags
from weir.errors import DagDefinitionError
from weir.task import XComArg

THIS_FILE = __file__


@task
def extract() -> list[int]:
    """Read the rows."""
    return [1, 2, 3]


@task(retries=2, retry_delay=5, queue="heavy")
def load(rows: list[int] | None = None) -> int:
    return sum(rows or [])


@task
def notify(*_inputs: Any) -> None:
    return None


def test_taskflow_call_wires_the_return_value_as_input() -> None:
    @dag(schedule="0 6 * * *", tags=["etl"])
    def nightly() -> None:
        load(extract())

    built = nightly()

    assert list(built.tasks) == ["extract", "load"]
    assert built.tasks["load"].upstream_ids == {"extract"}
    assert built.tasks["load"].input_ids() == {"extract"}
    assert built.tasks["load"].resolve_arguments({"extract": [4, 5]}) == (([4, 5],), {})


def test_repeated_calls_get_numbered_ids_and_override_names_one() -> None:
    @dag
    def fan_out() -> None:
        extract()
        extract()
        extract.override(task_id="extract_eu")()
        extract()

    assert list(fan_out().tasks) == ["extract", "extract__1", "extract_eu", "extract__2"]


class _CountingTasks(dict[str, Any]):
    """A DAG's task table that counts the lookups made in it."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def test_numbered_ids_skip_explicit_ones_and_cost_no_more_per_task_as_the_dag_grows() -> None:
    built = Dag("wide", fileloc=THIS_FILE)
    tasks = built.tasks = _CountingTasks()
    tasks["noop__2"] = None  # an explicit id in the middle of the numbered ones
    ids = []
    for _ in range(2_000):
        ids.append(built.claim_task_id(None, "noop"))
        tasks[ids[-1]] = None

    assert ids[:4] == ["noop", "noop__1", "noop__3", "noop__4"]
    assert ids[-1] == "noop__2000"
    assert tasks.lookups < 3 * len(ids)  # a search from ``noop`` each time made ~2 million


def test_a_long_chain_sorts_upstreams_first_with_waves_in_definition_order() -> None:
    @dag
    def chain() -> None:
        previous = extract()
        for _ in range(1_500):
            current = notify()
            previous >> current
            previous = current
        load() >> notify()

    built = chain()
    order = built.topological_order()

    # Waves: the two roots, then both their downstreams (load's is numbered last), then the chain.
    assert order[:5] == ["extract", "load", "notify", "notify__1500", "notify__1"]
    assert order[-1] == "notify__1499"
    assert len(order) == len(built.tasks) == 1_503


def test_duplicate_explicit_task_id_is_refused() -> None:
    @dag
    def twice() -> None:
        extract.override(task_id="same")()
        load.override(task_id="same")()

    with pytest.raises(DagDefinitionError) as refused:
        twice()
    message = str(refused.value)
    assert "'twice'" in message and "'same'" in message and THIS_FILE in message


def test_invalid_task_ids_are_refused() -> None:
    @dag
    def spaces() -> None:
        extract.override(task_id="has spaces")()

    @dag
    def anonymous() -> None:
        task(lambda: 1)()

    with pytest.raises(DagDefinitionError, match="'has spaces'"):
        spaces()
    with pytest.raises(DagDefinitionError, match="'<lambda>'"):
        anonymous()


def test_unknown_or_negative_task_options_are_refused() -> None:
    with pytest.raises(DagDefinitionError, match="retriez"):
        task(retriez=3)  # type: ignore[call-overload]
    with pytest.raises(DagDefinitionError, match="retriez"):
        extract.override(retriez=3)
    with pytest.raises(DagDefinitionError, match="negative"):
        task(retries=-1)


def test_shift_operators_wire_dependencies() -> None:
    @dag
    def classic() -> None:
        first = extract()
        second = load()
        third = notify()
        fourth = notify()
        first >> second >> third
        [first, second] >> fourth
        fourth << [third]

    built = classic()

    assert built.tasks["load"].upstream_ids == {"extract"}
    assert built.tasks["notify"].upstream_ids == {"load"}
    assert built.tasks["notify__1"].upstream_ids == {"extract", "load", "notify"}
    assert built.topological_order() == ["extract", "load", "notify", "notify__1"]


def test_shift_into_a_list_and_from_a_list_on_the_right() -> None:
    @dag
    def fan() -> None:
        start = extract()
        left, right = load(), notify()
        start >> [left, right]
        [left, right] << notify.override(task_id="after")()

    built = fan()

    assert built.tasks["load"].upstream_ids == {"extract", "after"}
    assert built.tasks["notify"].upstream_ids == {"extract", "after"}


def test_shift_refuses_what_is_not_a_task() -> None:
    @dag
    def wrong() -> None:
        extract() >> "load"  # type: ignore[operator]

    with pytest.raises(DagDefinitionError, match="connect tasks"):
        wrong()


def test_cycle_is_refused_naming_dag_task_and_file() -> None:
    @dag
    def loop() -> None:
        a = extract()
        b = load(a)
        c = notify(b)
        c >> a

    with pytest.raises(DagDefinitionError) as refused:
        loop()
    message = str(refused.value)
    assert "'loop'" in message and THIS_FILE in message
    assert "extract >> load >> notify >> extract" in message


def test_cycle_report_names_a_task_on_the_cycle_not_one_downstream_of_it() -> None:
    @dag
    def tail() -> None:
        downstream = extract()  # "extract" sorts first but is only downstream of the cycle
        x = load.override(task_id="x")()
        y = load.override(task_id="y")()
        x >> y >> x
        y >> downstream

    with pytest.raises(DagDefinitionError) as refused:
        tail()
    assert "'extract'" not in str(refused.value)
    assert "x >> y >> x" in str(refused.value)


def test_self_dependency_is_a_cycle() -> None:
    @dag
    def selfish() -> None:
        a = extract()
        a >> a

    with pytest.raises(DagDefinitionError, match="extract >> extract"):
        selfish()


def test_dependency_across_dags_is_refused() -> None:
    leaked: dict[str, XComArg] = {}

    @dag
    def first() -> None:
        leaked["rows"] = extract()

    @dag
    def second_by_argument() -> None:
        load(leaked["rows"])

    @dag
    def second_by_shift() -> None:
        leaked["rows"] >> load()

    first()
    with pytest.raises(DagDefinitionError, match="another DAG"):
        second_by_argument()
    with pytest.raises(DagDefinitionError, match="another DAG"):
        second_by_shift()


def test_calling_a_task_outside_a_dag_is_refused() -> None:
    with pytest.raises(DagDefinitionError, match="outside a DAG"):
        extract()


def test_dag_without_tasks_or_with_an_invalid_id_is_refused() -> None:
    @dag
    def empty() -> None:
        pass

    @dag(dag_id="not valid!")
    def badly_named() -> None:
        extract()

    with pytest.raises(DagDefinitionError, match="no tasks"):
        empty()
    with pytest.raises(DagDefinitionError, match="'not valid!'"):
        badly_named()


def test_to_dict_is_the_json_safe_serialized_structure() -> None:
    @dag(
        dag_id="orders",
        schedule="0 6 * * *",
        start_date=datetime(2026, 1, 1),
        timezone="Europe/Paris",
        catchup=True,
        tags=["etl"],
    )
    def nightly_orders() -> None:
        """Load the orders."""
        load(extract())

    serialized = nightly_orders().to_dict()

    assert json.loads(json.dumps(serialized)) == serialized
    assert {k: serialized[k] for k in ("dag_id", "description", "schedule", "start_date")} == {
        "dag_id": "orders",
        "description": "Load the orders.",
        "schedule": "0 6 * * *",
        "start_date": "2026-01-01T00:00:00",
    }
    assert (serialized["timezone"], serialized["catchup"], serialized["tags"]) == (
        "Europe/Paris",
        True,
        ["etl"],
    )
    first, second = serialized["tasks"]
    assert {k: first[k] for k in ("task_id", "kind", "upstream", "inputs", "doc")} == {
        "task_id": "extract",
        "kind": "python",
        "upstream": [],
        "inputs": [],
        "doc": "Read the rows.",
    }
    assert {k: second[k] for k in ("task_id", "upstream", "retries", "retry_delay", "queue")} == {
        "task_id": "load",
        "upstream": ["extract"],
        "retries": 2,
        "retry_delay": 5,
        "queue": "heavy",
    }
    assert (second["trigger_rule"], second["pool"], second["pool_slots"]) == (
        "all_success",
        "default_pool",
        1,
    )


def test_shell_task_kind_is_serialized() -> None:
    @task.shell
    def greet() -> str:
        return "echo hi"

    @dag
    def shell() -> None:
        greet()

    assert shell().to_dict()["tasks"][0]["kind"] == "shell"


def test_collect_dags_gathers_only_what_is_built_inside_the_block() -> None:
    @dag
    def gathered() -> None:
        extract()

    gathered()  # outside any block: built, returned, but collected nowhere
    with collect_dags() as outer:
        first = gathered()
        with collect_dags() as inner:
            second = gathered()
        third = gathered()

    assert all(isinstance(d, Dag) for d in outer)
    assert outer == [first, third]
    assert inner == [second]


def test_a_failed_dag_is_not_collected() -> None:
    @dag
    def broken() -> None:
        extract()
        raise ValueError("boom")

    with collect_dags() as found, pytest.raises(ValueError, match="boom"):
        broken()
    assert found == []
