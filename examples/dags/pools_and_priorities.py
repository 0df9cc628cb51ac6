"""Capacity: a pool that protects a database, priorities, a per-DAG task limit and a GPU queue.

Create the pool first (admin token): ``POST /api/v1/pools {"name": "warehouse", "slots": 2}``.
Until then the loads wait with ``wait_code`` ``pool_missing``, and the API says how to fix it.
``crunch`` runs on queue ``gpu``: start a worker with ``weir worker --queues gpu`` (it waits with
``no_worker`` until one does).
"""

from weir import dag, task


@dag(tags=["example"], max_active_runs=1, max_active_tasks=4)
def pools_and_priorities():
    """Five loads share the two warehouse slots; the orders table goes first."""

    @task(pool="warehouse", priority_weight=10)
    def load_orders() -> int:
        print("loading orders first: the dashboard needs them")
        return 1

    @task(pool="warehouse")
    def load(table: str) -> int:
        print(f"loading {table}")
        return 1

    @task(pool="warehouse", pool_slots=2)
    def rebuild_indexes(*loaded: int) -> None:
        # Two slots: no load shares the warehouse while indexes are rebuilt.
        print(f"rebuilding indexes after {sum(loaded)} loads")

    @task(queue="gpu")
    def crunch() -> str:
        return "model scored"

    loads = [load_orders()] + [load(t) for t in ("customers", "products", "stock", "returns")]
    rebuild_indexes(*loads) >> crunch()


pools_and_priorities()
