"""``make bench``: Weir's throughput and latency on each backend.

Each *setup* (a backend, and where its worker runs) boots a whole Weir through the test harness
(``tests/support/stack.py``) and runs each *scenario* (a DAG shape) a few times after a warm-up:

- ``dags``: the DAG files, written into the stack's DAGs folder;
- ``metrics``: pure arithmetic on task-instance timestamps (gaps, percentiles);
- ``setups``: how each backend is started, and where its worker runs;
- ``scenarios``: trigger, wait, measure one scenario on a running stack;
- ``profiling``: optional cProfile of the bench process and the worker process;
- ``report``: the rich table and the JSON file under ``bench/results/``.
"""
