"""Airflow's warm-up before anything is measured: as many parallel no-op tasks as twice the
LocalExecutor's processes, so every worker process has run a task and the api-server has served
the Task SDK's first calls (the first task of a fresh Airflow waits seconds on them).

Read by Airflow's dag-processor and task processes (never by Weir); the width comes from the
environment that ``bench.peers`` gives Airflow's processes.
"""

from __future__ import annotations

import os

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

WIDTH = int(os.environ.get("WEIR_PEERS_WARMUP_WIDTH", "32"))


def noop() -> None:
    return None


with DAG("peers_warmup", schedule=None, catchup=False, max_active_tasks=WIDTH):
    for n in range(WIDTH):
        PythonOperator(task_id=f"noop_{n}", python_callable=noop)
