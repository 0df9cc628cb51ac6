"""Airflow's side of the fan-out: ``start >> [noop] * width >> end``, as in Weir's bench.

Read by Airflow's dag-processor and task processes (never by Weir); the width comes from the
environment that ``bench.peers`` gives Airflow's processes.
"""

from __future__ import annotations

import os

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

WIDTH = int(os.environ.get("WEIR_PEERS_WIDTH", "200"))


def noop() -> None:
    return None


with DAG("peers_fanout", schedule=None, catchup=False, max_active_tasks=WIDTH + 2):
    start = PythonOperator(task_id="start", python_callable=noop)
    noops = [PythonOperator(task_id=f"noop_{n}", python_callable=noop) for n in range(WIDTH)]
    end = PythonOperator(task_id="end", python_callable=noop)
    start >> noops >> end
