"""How the bench configures Airflow: every setting a careful operator would change for throughput
and latency on this machine, each with the reason, all passed as ``AIRFLOW__*`` variables.

Airflow 3 runs an api-server (REST and the Task SDK's execution API), a scheduler (with the
LocalExecutor's worker processes, each forking one process per task), a dag-processor and a
triggerer, all on PostgreSQL. Nothing is left at a default that would handicap it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DAGS_FOLDER", "AirflowLayout", "Setting", "airflow_environment", "tuned_settings"]

DAGS_FOLDER = Path(__file__).resolve().parent / "airflow_dags"
"""The bench's DAG files for Airflow, one per shape."""


@dataclass(frozen=True)
class Setting:
    """One ``AIRFLOW__SECTION__KEY`` variable, its value, and why the bench sets it so."""

    variable: str
    value: str
    why: str


@dataclass(frozen=True)
class AirflowLayout:
    """Where this Airflow lives and what it runs: paths, database, port and DAG sizes."""

    venv: Path
    home: Path
    dags_folder: Path
    database_url: str
    port: int
    log_ports: tuple[int, int]
    """The scheduler's and the triggerer's log servers (Airflow's defaults, 8793 and 8794, may
    be taken on a shared machine)."""
    width: int
    length: int
    parallelism: int
    secret: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def tuned_settings(width: int, parallelism: int) -> list[Setting]:
    """The performance settings, with reasons (written into the results JSON as they are)."""
    return [
        Setting(
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME",
            "0.05",
            "default 1 s: the scheduler sleeps this long when a loop found nothing to do, which "
            "then dominates every hand-off; 0.05 s is what a careful operator sets",
        ),
        Setting(
            "AIRFLOW__CORE__PARALLELISM",
            str(parallelism),
            "LocalExecutor worker processes, each supervising one task at a time; matched to "
            "Weir's worker_concurrency so both run as many tasks at once (more only adds "
            "contention on 2 cores)",
        ),
        Setting(
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG",
            str(max(width + 2, 16)),
            "default 16 per DAG run: would cap the fan-out below parallelism's reach; the whole "
            "fan-out may be scheduled at once, as in Weir",
        ),
        Setting(
            "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY",
            "512",
            "default 16: task instances the scheduler queues per loop; raised so a fan-out is "
            "queued in one or two loops, not 13",
        ),
        Setting(
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL",
            "600",
            "default 30 s: the DAG files do not change during the bench, so re-parsing them "
            "only takes CPU from the scheduler and the tasks",
        ),
        Setting(
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
            "600",
            "default 300 s: no new DAG files appear during the bench",
        ),
        Setting(
            "AIRFLOW__LOGGING__LOGGING_LEVEL",
            "WARNING",
            "default INFO: less logging in every component and every task; Weir's bench runs "
            "at WARNING too",
        ),
    ]


def _base_settings(layout: AirflowLayout) -> dict[str, str]:
    """What makes this Airflow run here at all: executor, database, ports, DAGs, auth."""
    return {
        "AIRFLOW_HOME": str(layout.home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(layout.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": layout.database_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(layout.port),
        "AIRFLOW__API__BASE_URL": layout.base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{layout.base_url}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(layout.log_ports[0]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(layout.log_ports[1]),
        # The bench talks to the REST API as the anonymous admin; nothing listens beyond loopback.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # One secret shared by every component, so the tokens one signs the others accept.
        "AIRFLOW__API_AUTH__JWT_SECRET": layout.secret,
        "AIRFLOW__API__SECRET_KEY": layout.secret,
        "WEIR_PEERS_WIDTH": str(layout.width),
        "WEIR_PEERS_LENGTH": str(layout.length),
        "WEIR_PEERS_WARMUP_WIDTH": str(2 * layout.parallelism),
    }


def airflow_environment(
    layout: AirflowLayout, inherited: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of every Airflow command: the caller's, less any other Python or Airflow
    configuration, plus the base and tuned settings, with the Airflow virtualenv first on PATH."""
    base = dict(os.environ if inherited is None else inherited)
    for name in list(base):
        if name.startswith("AIRFLOW") or name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            del base[name]
    base["PATH"] = f"{layout.venv / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    base.update(_base_settings(layout))
    base.update({s.variable: s.value for s in tuned_settings(layout.width, layout.parallelism)})
    return base
