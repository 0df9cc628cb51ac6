"""Extract, transform, load: each task's return value becomes the next task's argument."""

from weir import dag, get_current_context, task


@dag(tags=["example"])
def etl():
    """The smallest useful DAG: three Python tasks passing data along."""

    @task
    def extract() -> list[int]:
        print("extracting three rows")
        return [1, 2, 3]

    @task
    def transform(rows: list[int]) -> list[int]:
        return [row * 10 for row in rows]

    @task
    def load(rows: list[int]) -> int:
        context = get_current_context()
        total = sum(rows)
        print(f"run {context.run_id} loaded {len(rows)} rows, total {total}")
        return total

    load(transform(extract()))


etl()
