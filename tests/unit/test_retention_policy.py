"""Retention's pure parts: how a DAG's options combine with the global settings, what ``@dag`` and
the settings accept, and the shape and place of the archive files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.retention import RetentionPolicy
from app.retention.export import append_records, export_path
from weir import dag, task
from weir.config import Settings
from weir.errors import DagDefinitionError


@task
def work() -> None:
    return None


# --- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, RetentionPolicy(days=30, runs=100)),
        ({"retention_days": None, "retention_runs": None}, RetentionPolicy(days=30, runs=100)),
        ({"retention_days": 365}, RetentionPolicy(days=365, runs=100)),
        ({"retention_runs": 5}, RetentionPolicy(days=30, runs=5)),
        ({"retention_days": 0}, RetentionPolicy(days=None, runs=100)),
        ({"retention_days": 0, "retention_runs": 0}, RetentionPolicy()),
    ],
)
def test_each_limit_of_a_dag_overrides_the_global_one_separately(
    options: dict[str, Any], expected: RetentionPolicy
) -> None:
    assert RetentionPolicy(days=30, runs=100).for_dag(options) == expected


def test_a_dag_can_have_a_policy_when_the_deployment_has_none() -> None:
    assert not RetentionPolicy().is_active
    assert RetentionPolicy().for_dag({"retention_runs": 10}) == RetentionPolicy(runs=10)
    assert RetentionPolicy().for_dag({"retention_runs": 10}).is_active


# --- @dag options -------------------------------------------------------------------------------


def test_dag_retention_options_are_serialized_in_days_and_runs() -> None:
    @dag(retention_days=timedelta(hours=36), retention_runs=50)
    def kept() -> None:
        work()

    options = kept().to_dict()
    assert options["retention_days"] == 1.5
    assert options["retention_runs"] == 50


def test_dag_without_retention_options_inherits() -> None:
    @dag
    def plain() -> None:
        work()

    options = plain().to_dict()
    assert options["retention_days"] is None and options["retention_runs"] is None


@pytest.mark.parametrize(
    "arguments",
    [
        {"retention_days": -1},
        {"retention_days": float("inf")},
        {"retention_days": float("nan")},
        {"retention_days": "30"},
        {"retention_days": True},
        {"retention_runs": -1},
        {"retention_runs": 2.5},
        {"retention_runs": True},
    ],
)
def test_bad_retention_options_are_refused_naming_the_dag(arguments: dict[str, Any]) -> None:
    @dag(dag_id="refused", **arguments)
    def refused() -> None:
        work()

    with pytest.raises(DagDefinitionError, match=r"refused.*retention_"):
        refused()


# --- settings -----------------------------------------------------------------------------------


def test_settings_read_retention_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEIR_RETENTION_DAYS", "90")
    monkeypatch.setenv("WEIR_RETENTION_RUNS", "1000")
    monkeypatch.setenv("WEIR_RETENTION_EXPORT_DIR", str(tmp_path))
    settings = Settings()
    assert settings.retention_days == 90
    assert settings.retention_runs == 1000
    assert settings.retention_export_dir == tmp_path
    assert not settings.retention_export_logs
    assert RetentionPolicy.from_settings(settings) == RetentionPolicy(days=90, runs=1000)


def test_settings_default_to_keeping_everything() -> None:
    assert not RetentionPolicy.from_settings(Settings()).is_active


@pytest.mark.parametrize(
    "values", [{"retention_days": 0}, {"retention_runs": 0}, {"retention_batch_size": 0}]
)
def test_settings_refuse_limits_that_would_delete_everything(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)


# --- archive files ------------------------------------------------------------------------------


def record(dag_id: str, run_id: str, logical_date: datetime) -> dict[str, Any]:
    return {"dag_id": dag_id, "run_id": run_id, "logical_date": logical_date, "task_instances": []}


def test_a_run_is_archived_under_its_dag_and_the_day_of_its_logical_date(tmp_path: Path) -> None:
    late = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    assert export_path(tmp_path, record("etl", "r", late)) == tmp_path / "etl/2026-03-01.jsonl"


@pytest.mark.parametrize("dag_id", ["..", ".", ".hidden"])
def test_a_dag_id_cannot_escape_the_archive_folder(tmp_path: Path, dag_id: str) -> None:
    path = export_path(tmp_path, record(dag_id, "r", datetime(2026, 1, 1, tzinfo=UTC)))
    assert path.resolve().parent.parent == tmp_path.resolve()
    assert not path.parent.name.startswith(".")


def test_records_are_appended_as_json_lines(tmp_path: Path) -> None:
    day = datetime(2026, 1, 1, 6, tzinfo=UTC)
    append_records(tmp_path, [record("etl", "a", day), record("etl", "b", day)])
    append_records(tmp_path, [record("etl", "c", day), record("other", "d", day)])

    lines = (tmp_path / "etl/2026-01-01.jsonl").read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["a", "b", "c"]
    assert json.loads(lines[0])["logical_date"] == "2026-01-01T06:00:00+00:00"
    assert (tmp_path / "other/2026-01-01.jsonl").exists()
