"""The bound: what a minimal, hand-written, batched orchestrator core does on this machine right
now, on the same PostgreSQL and RabbitMQ, so that Weir's throughputs can be printed as ratios to
it (absolute figures on a shared machine vary run to run; ratios within one run do not).

``measure_bound`` runs it; ``python -m bench.bound`` prints it. Layout: ``statements`` (the SQL),
``scratch`` (a database and queue of its own), ``pipeline`` (scheduler and worker sides),
``measure`` (the three measurements).
"""

from bench.bound.measure import BoundResult, measure_bound

__all__ = ["BoundResult", "measure_bound"]
