"""Dynamic task mapping: one task instance per file that a listing task finds at run time, then a
total over their results, which arrive as one list in map-index order."""

from weir import dag, get_current_context, task


@dag(tags=["example"])
def mapped():
    """``count_lines.partial(...).expand(path=list_files())``: as many instances as files."""

    @task
    def list_files() -> list[str]:
        # Known only when the run runs: the mapped task below gets one instance per element.
        return ["a.csv", "b.csv", "c.csv"]

    @task(retries=2)
    def count_lines(path: str, header: bool) -> int:
        # Each instance gets one element, and knows its index; each retries on its own.
        index = get_current_context().map_index
        print(f"instance {index}: counting {path} (header={header})")
        return 10 * (index + 1) - (1 if header else 0)

    @task
    def total(counts: list[int]) -> int:
        # A task that takes a mapped task's result receives the list of all its results.
        print(f"lines per file: {counts}")
        return sum(counts)

    @task
    def shout(word: str) -> str:
        return word.upper()

    total(count_lines.partial(header=True).expand(path=list_files()))
    shout.expand(word=["mapped", "over", "a", "literal"])


mapped()
