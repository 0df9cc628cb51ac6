"""The pure parts of ``make bench-peers``: Airflow's settings and pins, the arithmetic on task
timestamps, reading Weir's bench JSON, and the side-by-side table and JSON. Running Airflow
itself needs it installed from the package registry, which the test run cannot do."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from bench.peers.airflow_config import (
    DAGS_FOLDER,
    AirflowLayout,
    airflow_environment,
    tuned_settings,
)
from bench.peers.airflow_run import DAG_IDS, airflow_url
from bench.peers.compare import Row, WeirResultError, compare, weir_figures
from bench.peers.install import REQUIREMENTS, InstallError, pinned_airflow_version
from bench.peers.report import table, write_json
from bench.peers.timings import (
    TaskTimes,
    chain_figures,
    cpu_figure,
    fanout_figures,
    hops_ms,
    trigger_figures,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def weir_figure(scenario: str, metric: str, value: float | None, setup: str = "postgres") -> dict:
    """A figure as Weir's bench writes it (``bench.figures.Figure.as_dict()``)."""
    unit = "tasks/s" if metric == "tasks_per_s" else "ms"
    return {
        "scenario": scenario,
        "setup": setup,
        "metric": metric,
        "value": value,
        "unit": unit,
        "goal": None,
        "met": None,
        "bound": 3000.0 if metric == "tasks_per_s" else None,
        "ratio_to_bound": None,
        "size": 200,
    }


WEIR_RESULT = {
    "meta": {"started_at": "2026-12-03T12:00:00+00:00"},
    "bound": {"fanout_tasks_per_s": 3000.0},
    "figures": [
        weir_figure("fanout", "tasks_per_s", 40.0, setup="sqlite"),
        weir_figure("fanout", "tasks_per_s", 30.0),
        weir_figure("fanout", "cpu_ms_per_task", 20.0),
        weir_figure("chain", "hop_p50_ms", 50.0),
        weir_figure("chain", "sched_p50_ms", 10.0),
        weir_figure("trigger", "trigger_p50_ms", 100.0),
        weir_figure("runs", "tasks_per_s", 99.0),
    ],
}


def test_the_requirements_pin_an_airflow_3() -> None:
    version = pinned_airflow_version(REQUIREMENTS.read_text())
    assert version.split(".")[0] == "3"


def test_the_pin_is_read_with_or_without_extras_and_required() -> None:
    assert pinned_airflow_version("x==1\napache-airflow[postgres]==3.3.2\n") == "3.3.2"
    assert pinned_airflow_version("apache-airflow==3.1.0\n") == "3.1.0"
    with pytest.raises(InstallError):
        pinned_airflow_version("apache-airflow-core==3.3.2\n")


def layout(tmp_path: Path) -> AirflowLayout:
    return AirflowLayout(
        venv=tmp_path / "venv",
        home=tmp_path / "home",
        dags_folder=tmp_path / "dags",
        database_url=airflow_url("postgresql+asyncpg://postgres:pw@127.0.0.1:5432/postgres"),
        port=18080,
        log_ports=(18081, 18082),
        width=200,
        length=50,
        parallelism=16,
        secret="s" * 64,
    )


def test_airflow_runs_tuned_on_its_own_database_and_ignores_foreign_configuration(
    tmp_path: Path,
) -> None:
    inherited = {
        "PATH": "/usr/bin",
        "PYTHONPATH": "/elsewhere",
        "AIRFLOW__CORE__PARALLELISM": "1",
        "AIRFLOW_HOME": "/elsewhere",
    }
    env = airflow_environment(layout(tmp_path), inherited)
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.05"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "16"
    assert env["WEIR_PEERS_WARMUP_WIDTH"] == "32"
    assert int(env["AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG"]) >= 202
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://postgres:pw@127.0.0.1:5432/weir_bench_airflow"
    )
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["PATH"].split(":")[0] == str(tmp_path / "venv" / "bin")
    assert "PYTHONPATH" not in env


def test_every_tuned_setting_says_why() -> None:
    for setting in tuned_settings(width=200, parallelism=16):
        assert setting.variable.startswith("AIRFLOW__") and len(setting.why) > 20


def test_each_dag_the_bench_triggers_has_its_file() -> None:
    sources = {path.stem: path.read_text() for path in DAGS_FOLDER.glob("*.py")}
    for dag_id in DAG_IDS:
        assert f'"{dag_id}"' in sources[dag_id]


def test_a_hop_is_the_downstream_start_minus_the_upstream_end() -> None:
    tasks = {
        "a": TaskTimes("a", at(0), at(100)),
        "b": TaskTimes("b", at(130), at(200)),
        "c": TaskTimes("c", at(250), at(300)),
    }
    assert hops_ms(tasks, ["a", "b", "c"]) == pytest.approx([30.0, 50.0])


def test_figures_are_named_as_in_weirs_bench() -> None:
    (rate,) = fanout_figures(202, [10.0, 2.0, 4.0], width=200)
    assert (rate.scenario, rate.metric, rate.unit) == ("fanout", "tasks_per_s", "tasks/s")
    assert rate.size == 200
    assert rate.value == pytest.approx(202 / 4.0)
    p50, p95 = chain_figures([float(n) for n in range(1, 101)], length=50)
    assert (p50.metric, p95.metric) == ("hop_p50_ms", "hop_p95_ms")
    assert (p50.value, p95.value) == pytest.approx((50.5, 95.05))
    assert [f.metric for f in trigger_figures([300.0, 100.0, 200.0])] == [
        "trigger_p50_ms",
        "trigger_p95_ms",
    ]
    assert trigger_figures([300.0, 100.0, 200.0])[0].value == 200.0
    cpu = cpu_figure("fanout", 60.0, 404, size=200)
    assert (cpu.metric, cpu.value) == ("cpu_ms_per_task", pytest.approx(60_000 / 404))


def test_weirs_figures_are_the_compared_ones_of_the_postgres_setup() -> None:
    figures = {(f.scenario, f.metric): f for f in weir_figures(WEIR_RESULT)}
    assert set(figures) == {
        ("fanout", "tasks_per_s"),
        ("fanout", "cpu_ms_per_task"),
        ("chain", "hop_p50_ms"),
        ("trigger", "trigger_p50_ms"),
    }
    assert figures["fanout", "tasks_per_s"].value == 30.0
    assert figures["fanout", "tasks_per_s"].bound == 3000.0


def test_a_weir_result_without_figures_is_refused() -> None:
    with pytest.raises(WeirResultError):
        weir_figures({"results": []})
    with pytest.raises(WeirResultError):
        weir_figures({"figures": [{"scenario": "fanout"}]})


def test_the_comparison_says_which_side_is_better_for_each_metric() -> None:
    airflow = [
        *fanout_figures(202, [40.0], width=200),
        *chain_figures([400.0, 600.0], length=50),
        cpu_figure("chain", 30.0, 50, size=50),
    ]
    rows = {(r.scenario, r.metric): r for r in compare(airflow, weir_figures(WEIR_RESULT))}
    rate = rows["fanout", "tasks_per_s"]
    assert rate.ratio == pytest.approx(30.0 / (202 / 40.0))
    assert rate.is_weir_better
    hop = rows["chain", "hop_p50_ms"]
    assert hop.ratio == pytest.approx(0.1) and hop.is_weir_better
    assert rows["chain", "cpu_ms_per_task"].weir is None
    assert rows["chain", "cpu_ms_per_task"].ratio is None
    assert rows["fanout", "cpu_ms_per_task"].airflow is None
    assert list(rows)[:3] == [
        ("fanout", "tasks_per_s"),
        ("fanout", "cpu_ms_per_task"),
        ("chain", "hop_p50_ms"),
    ]


def test_a_slower_weir_is_shown_as_worse() -> None:
    assert Row("chain", "hop_p50_ms", "ms", airflow=100.0, weir=150.0).is_weir_better is False
    assert Row("fanout", "tasks_per_s", "tasks/s", airflow=6.0, weir=3.0).is_weir_better is False
    assert Row("chain", "hop_p50_ms", "ms", airflow=math.nan, weir=1.0).ratio is None


def test_the_table_shows_both_sides_the_ratio_and_the_bound() -> None:
    rows = [
        Row("fanout", "tasks_per_s", "tasks/s", airflow=5.0, weir=30.0, bound=3000.0),
        Row("chain", "hop_p50_ms", "ms", airflow=135.0, weir=None),
    ]
    console = Console(record=True, width=200)
    console.print(table(rows, airflow_label="Airflow 3.3.2", weir_label="Weir", caption="c"))
    text = console.export_text()
    assert "Airflow 3.3.2" in text and "Weir/Airflow" in text and "bound" in text
    assert "5.0 tasks/s" in text and "30.0 tasks/s" in text and "6.00" in text
    assert "3,000 tasks/s" in text
    assert "135 ms" in text and "—" in text


def test_the_json_holds_the_comparison_with_nan_as_null(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    rows = [Row("chain", "hop_p95_ms", "ms", airflow=math.nan, weir=12.0)]
    write_json(path, {"started_at": T0, "where": tmp_path}, rows)
    document = json.loads(path.read_text())
    assert document["started_at"] == T0.isoformat()
    (row,) = document["comparison"]
    assert row["airflow"] is None and row["weir"] == 12.0 and row["ratio_weir_to_airflow"] is None
