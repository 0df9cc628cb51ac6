"""Classic dependencies with ``>>``, one task called several times, and a shell task."""

from weir import dag, task


@dag(tags=["example"])
def fan_out():
    """Download three regions in parallel, then report with a shell command."""

    @task
    def start() -> None:
        print("starting")

    @task
    def download(region: str) -> str:
        print(f"downloading {region}")
        return f"{region}.csv"

    @task.shell
    def report() -> str:
        return "echo 'three regions downloaded' && date -u +%Y-%m-%dT%H:%M:%SZ"

    begin = start()
    # Calling `download` three times gives task ids download, download__1, download__2;
    # `.override(task_id=...)` names a task yourself.
    files = [download("eu"), download("us"), download.override(task_id="download_asia")("asia")]
    begin >> files
    files >> report()


fan_out()
