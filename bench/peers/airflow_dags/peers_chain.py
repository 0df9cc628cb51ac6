"""Airflow's side of the chain: ``noop_0 >> noop_1 >> …``, as in Weir's bench.

Read by Airflow's dag-processor and task processes (never by Weir); the length comes from the
environment that ``bench.peers`` gives Airflow's processes.
"""

from __future__ import annotations

import os

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, chain

LENGTH = int(os.environ.get("WEIR_PEERS_LENGTH", "50"))


def noop() -> None:
    return None


with DAG("peers_chain", schedule=None, catchup=False):
    chain(*(PythonOperator(task_id=f"noop_{n}", python_callable=noop) for n in range(LENGTH)))
