"""``make bench-peers``: Weir beside Apache Airflow 3 on the same shapes, machine and PostgreSQL.

``__main__`` runs both sides; ``install`` keeps Airflow's virtualenv, ``airflow_config`` its
settings (each with its reason), ``airflow_run`` its processes and database, ``airflow_shapes``
measures it, ``weir_side`` runs Weir's own bench, ``figures``, ``compare`` and ``report`` turn
both into one table and one JSON file. ``airflow_dags/`` holds the DAG files Airflow parses.
"""
