"""Airflow's side of the trigger latency: one no-op task, triggered again and again.

Read by Airflow's dag-processor and task processes (never by Weir).
"""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def noop() -> None:
    return None


with DAG("peers_trigger", schedule=None, catchup=False):
    PythonOperator(task_id="noop", python_callable=noop)
