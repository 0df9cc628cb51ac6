"""A sensor: wait for a file that another system drops, without holding a worker slot.

``export_ready`` looks for the file every 5 seconds; between two looks its worker slot runs other
tasks. Once the file is there, ``count_rows`` reads it. If it has not come within an hour, the
sensor fails and ``count_rows`` with it (``soft_fail=True`` would skip both instead).

Trigger it with ``{"conf": {"path": "/tmp/weir-example/export.csv"}}`` (the default), then create
the file: ``mkdir -p /tmp/weir-example && seq 10 > /tmp/weir-example/export.csv``.
"""

from datetime import timedelta
from pathlib import Path

from weir import Param, dag, get_current_context, task
from weir.sensors import PokeReturnValue


@dag(params={"path": Param("/tmp/weir-example/export.csv", type="string")}, tags=["example"])
def wait_for_export():
    @task.sensor(poke_interval=5, timeout=timedelta(hours=1))
    def export_ready() -> PokeReturnValue:
        """Done when the file exists; its path is what downstream tasks receive."""
        path = Path(get_current_context().params["path"])
        if not path.exists():
            print(f"{path} is not there yet")
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=str(path))

    @task
    def count_rows(path: str) -> int:
        return len(Path(path).read_text().splitlines())

    count_rows(export_ready())


wait_for_export()
