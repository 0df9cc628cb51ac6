"""``make bench``: Weir's throughput, latency, cost per task and footprint on each backend.

Each *setup* (``setups``) starts real ``weir`` processes; each *scenario* (``scenarios``) triggers
runs over the REST API and turns what the service recorded, and what ``/proc`` says its
processes used, into *figures* judged against issue 14's goals and the minimal pipeline's bound:

- ``dags``: the DAG files (no-op tasks; fan-out, chain, one task, many scheduled DAGs);
- ``setups``: ``weir api`` + ``weir worker`` on PostgreSQL + RabbitMQ, ``weir standalone``;
- ``weir_client``: the REST calls the bench makes;
- ``process_usage``: CPU and memory of a process tree from ``/proc``;
- ``measure``: one run, runs triggered together, trigger latencies, idle CPU;
- ``metrics``: pure arithmetic on task-instance timestamps (gaps, percentiles);
- ``scenarios``: the named scenarios and the figures they make;
- ``figures``: a figure, its goal, met or not, its ratio to the bound;
- ``bound_run``: runs ``bound`` (the minimal pipeline) in the same invocation;
- ``suite``, ``progress``, ``report``: run it all, show progress, print the table, write JSON;
- ``profiling``: optional cProfile of every Weir process.
"""
