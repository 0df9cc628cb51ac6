"""The DAG processor against real databases (SQLite and PostgreSQL) and real child processes: what a
DAG file's life (added, edited, broken, fixed, hung, deleted, duplicated) leaves in the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.dag_processor.loader import MODULE_PREFIX, load_dag_file
from app.dag_processor.parsing import parse_file
from app.dag_processor.store import hash_structure
from app.dag_processor.supervisor import DagProcessor
from app.db.engine import Database, create_database
from app.db.models import Base, Dag, DagFile, DagVersion, ImportError_
from tests.support.services import postgres_dsn, require_postgres
from weir.config import Settings

# --- fixtures: a fresh database per test on each backend, a DAGs folder, a processor -----------


@contextlib.asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Database]:
    database = create_database(url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield database
    finally:
        await database.dispose()


@contextlib.asynccontextmanager
async def _postgres_database() -> AsyncIterator[str]:
    """A database of the test's own, dropped afterwards (whatever the test left connected)."""
    base = postgres_dsn()
    await require_postgres(base)
    admin_dsn = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"weir_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async with _opened(f"sqlite+aiosqlite:///{tmp_path / 'weir.db'}") as opened:
            yield opened
        return
    async with _postgres_database() as url, _opened(url) as opened:
        yield opened


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    return folder


@pytest.fixture
def changed() -> asyncio.Event:
    """Set by the processor's ``on_change`` after every cycle that changed something."""
    return asyncio.Event()


def make_processor(
    database: Database, dags_folder: Path, changed: asyncio.Event | None = None, **settings: Any
) -> DagProcessor:
    options: dict[str, Any] = {"dag_parse_timeout": 30.0, "dag_rescan_interval": 60.0}
    options.update(settings)
    configured = Settings(dags_folder=dags_folder, database_url="sqlite://", **options)
    return DagProcessor(configured, database, on_change=changed.set if changed else None)


@pytest.fixture
def processor(database: Database, dags_folder: Path, changed: asyncio.Event) -> DagProcessor:
    return make_processor(database, dags_folder, changed)


# --- DAG files and database reads ----------------------------------------------------------------


def dag_source(dag_id: str, tasks: Sequence[str] = ("extract",), schedule: str = "@daily") -> str:
    """A DAG file defining ``dag_id`` (built by ``build_<dag_id>()``): ``tasks`` in a chain."""
    body = "".join(
        f"    @task(task_id={name!r})\n    def t{i}():\n        return {i}\n\n"
        for i, name in enumerate(tasks)
    )
    chain = " >> ".join(f"t{i}()" for i in range(len(tasks)))
    return (
        "from weir import dag, task\n\n\n"
        f"@dag(dag_id={dag_id!r}, schedule={schedule!r}, tags=['test'])\n"
        f"def build_{dag_id}():\n{body}    {chain}\n\n\nbuild_{dag_id}()\n"
    )


def write(folder: Path, relative_path: str, source: str) -> None:
    path = folder / relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def move(source: Path, target: Path) -> Path:
    return source.rename(target)


async def get_dag(database: Database, dag_id: str) -> Dag | None:
    async with database.sessions() as session:
        return await session.get(Dag, dag_id)


async def get_version(database: Database, version_id: int) -> DagVersion:
    async with database.sessions() as session:
        version = await session.get(DagVersion, version_id)
        assert version is not None
        return version


async def count_versions(database: Database, dag_id: str) -> int:
    async with database.sessions() as session:
        rows = await session.scalars(select(DagVersion.id).where(DagVersion.dag_id == dag_id))
        return len(rows.all())


async def get_import_error(database: Database, fileloc: str) -> str | None:
    async with database.sessions() as session:
        found = await session.get(ImportError_, fileloc)
        return found.error if found else None


async def get_dag_file(database: Database, fileloc: str) -> DagFile | None:
    async with database.sessions() as session:
        return await session.get(DagFile, fileloc)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], changed: asyncio.Event, within: float = 20.0
) -> None:
    """Wait at most ``within`` seconds until ``predicate`` holds, checking again after each
    processor cycle that changed something (never a fixed sleep)."""
    async with asyncio.timeout(within):
        while not await predicate():
            await changed.wait()
            changed.clear()


# --- a file's life -------------------------------------------------------------------------------


async def test_good_file_creates_its_dags_and_a_version(
    database: Database, dags_folder: Path, processor: DagProcessor, changed: asyncio.Event
) -> None:
    write(dags_folder, "orders.py", dag_source("orders", ["extract", "load"], "0 6 * * *"))

    assert await processor.process_once() == 1
    assert changed.is_set()

    row = await get_dag(database, "orders")
    assert row is not None
    assert (row.fileloc, row.is_active, row.is_paused) == ("orders.py", True, False)
    assert (row.schedule, row.tags) == ("0 6 * * *", ["test"])
    version = await get_version(database, row.version_id)
    assert [t["task_id"] for t in version.serialized["tasks"]] == ["extract", "load"]
    assert version.hash == hash_structure(version.serialized)
    assert await get_import_error(database, "orders.py") is None
    dag_file = await get_dag_file(database, "orders.py")
    assert dag_file is not None and dag_file.dag_ids == ["orders"]

    changed.clear()
    assert await processor.process_once() == 0, "an unchanged file is not parsed again"
    assert not changed.is_set()


async def test_editing_a_file_adds_a_version_and_keeps_the_dag_row(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "orders.py", dag_source("orders", ["extract"]))
    await processor.process_once()
    first = await get_dag(database, "orders")
    assert first is not None
    async with database.sessions.begin() as session:
        paused = await session.get_one(Dag, "orders")
        paused.is_paused = True

    write(dags_folder, "orders.py", dag_source("orders", ["extract", "load"]))
    assert await processor.process_once() == 1

    second = await get_dag(database, "orders")
    assert second is not None
    assert second.version_id != first.version_id
    assert second.is_paused, "a parse never unpauses what the user paused"
    assert await count_versions(database, "orders") == 2
    old = await get_version(database, first.version_id)
    assert [t["task_id"] for t in old.serialized["tasks"]] == ["extract"], "history is kept"

    # A change that leaves the structure alone (a comment) is parsed but adds no version.
    write(dags_folder, "orders.py", "# a comment\n" + dag_source("orders", ["extract", "load"]))
    assert await processor.process_once() == 1
    third = await get_dag(database, "orders")
    assert third is not None and third.version_id == second.version_id
    assert await count_versions(database, "orders") == 2


async def test_broken_file_records_an_import_error_and_keeps_the_last_good_version(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    good = dag_source("orders")
    write(dags_folder, "orders.py", good)
    await processor.process_once()
    before = await get_dag(database, "orders")
    assert before is not None

    write(dags_folder, "orders.py", good + "\ndef broken(:\n")
    assert await processor.process_once() == 1

    error = await get_import_error(database, "orders.py")
    assert error is not None
    assert "SyntaxError" in error and "orders.py" in error and "def broken(:" in error
    after = await get_dag(database, "orders")
    assert after is not None
    assert (after.is_active, after.version_id) == (True, before.version_id)
    assert await processor.process_once() == 0, "the same broken content is not parsed again"

    write(dags_folder, "orders.py", good)
    assert await processor.process_once() == 1
    assert await get_import_error(database, "orders.py") is None
    fixed = await get_dag(database, "orders")
    assert fixed is not None and fixed.version_id == before.version_id


async def test_runtime_errors_and_invalid_dags_are_import_errors_with_tracebacks(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "raises.py", "def f():\n    raise ValueError('no config')\n\nf()\n")
    write(dags_folder, "exits.py", "import sys\nsys.exit(3)\n")
    write(
        dags_folder,
        "cycle.py",
        """\
        from weir import dag, task

        @task
        def a():
            return 1

        @dag
        def looping():
            first = a()
            second = a()
            first >> second >> first

        looping()
        """,
    )
    write(dags_folder, "twice.py", dag_source("same") + "build_same()\n")

    assert await processor.process_once() == 4

    raises = await get_import_error(database, "raises.py")
    assert raises is not None
    assert "Traceback" in raises and 'raises.py", line 4' in raises and "no config" in raises
    assert "SystemExit: 3" in (await get_import_error(database, "exits.py") or "")
    cycle = await get_import_error(database, "cycle.py")
    assert cycle is not None and "'looping'" in cycle and "cycle" in cycle
    assert "'same'" in (await get_import_error(database, "twice.py") or "")
    assert await get_dag(database, "looping") is None
    assert await get_dag(database, "same") is None


async def test_file_that_hangs_is_killed_and_recorded_as_timed_out(
    database: Database, dags_folder: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    write(
        dags_folder,
        "hangs.py",
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(3600)\n",
    )
    processor = make_processor(database, dags_folder, dag_parse_timeout=1.0)

    started = time.monotonic()
    assert await processor.process_once() == 1
    assert time.monotonic() - started < 15

    error = await get_import_error(database, "hangs.py")
    assert error is not None and "timed out after 1 s" in error
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_deleted_file_turns_its_dags_inactive_and_keeps_their_history(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "orders.py", dag_source("orders"))
    await processor.process_once()
    write(dags_folder, "orders.py", dag_source("orders") + "\nbroken(\n")
    await processor.process_once()
    assert await get_import_error(database, "orders.py") is not None

    (dags_folder / "orders.py").unlink()
    assert await processor.process_once() == 1

    row = await get_dag(database, "orders")
    assert row is not None and not row.is_active
    assert await count_versions(database, "orders") == 1
    assert await get_dag_file(database, "orders.py") is None
    assert await get_import_error(database, "orders.py") is None

    write(dags_folder, "orders.py", dag_source("orders"))
    await processor.process_once()
    back = await get_dag(database, "orders")
    assert back is not None and back.is_active and back.version_id == row.version_id


async def test_dag_removed_from_its_file_turns_inactive(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "both.py", dag_source("first") + dag_source("second"))
    await processor.process_once()
    assert all([await get_dag(database, "first"), await get_dag(database, "second")])

    write(dags_folder, "both.py", dag_source("first"))
    await processor.process_once()

    first, second = await get_dag(database, "first"), await get_dag(database, "second")
    assert first is not None and first.is_active
    assert second is not None and not second.is_active


async def test_dag_id_defined_in_two_files_is_an_import_error_of_the_second(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "a.py", dag_source("shared", ["from_a"]))
    await processor.process_once()
    write(dags_folder, "b.py", dag_source("shared", ["from_b"]))
    await processor.process_once()

    error = await get_import_error(database, "b.py")
    assert error is not None and "'shared'" in error and "a.py" in error and "b.py" in error
    owner = await get_dag(database, "shared")
    assert owner is not None and owner.fileloc == "a.py"
    version = await get_version(database, owner.version_id)
    assert version.serialized["tasks"][0]["task_id"] == "from_a", "b.py did not steal it"

    # Once a.py lets go of the id, b.py, unchanged, takes it over in the same pass.
    (dags_folder / "a.py").unlink()
    await processor.process_once()

    taken = await get_dag(database, "shared")
    assert taken is not None and (taken.fileloc, taken.is_active) == ("b.py", True)
    assert await get_import_error(database, "b.py") is None


async def test_dag_moved_to_another_file_in_one_edit_changes_owner(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "a.py", dag_source("moving"))
    await processor.process_once()

    write(dags_folder, "a.py", "# moved to b.py\n")
    write(dags_folder, "b.py", dag_source("moving"))
    await processor.process_once()  # whichever file is stored first, b.py ends up the owner

    moved = await get_dag(database, "moving")
    assert moved is not None and (moved.fileloc, moved.is_active) == ("b.py", True)
    assert await get_import_error(database, "b.py") is None


async def test_folder_layout_subfolders_siblings_and_skipped_names(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "_shared.py", "SCHEDULE = '@hourly'\n")
    write(dags_folder, ".hidden/ghost.py", dag_source("ghost"))
    write(dags_folder, "__pycache__/stale.py", dag_source("stale"))
    write(dags_folder, "notes.txt", "not python")
    write(dags_folder, "empty.py", "VALUE = 1\n")
    source = dag_source("nested").replace("schedule='@daily'", "schedule=_shared.SCHEDULE")
    write(dags_folder, "team/nested.py", "import _shared\n" + source)

    assert await processor.process_once() == 2

    nested = await get_dag(database, "nested")
    assert nested is not None and (nested.fileloc, nested.schedule) == ("team/nested.py", "@hourly")
    empty = await get_dag_file(database, "empty.py")
    assert empty is not None and empty.dag_ids == [], "a file without DAGs is no error"
    assert await get_import_error(database, "empty.py") is None
    assert await get_dag(database, "ghost") is None and await get_dag(database, "stale") is None


async def test_missing_folder_changes_nothing(
    database: Database, dags_folder: Path, processor: DagProcessor
) -> None:
    write(dags_folder, "orders.py", dag_source("orders"))
    await processor.process_once()
    moved = move(dags_folder, dags_folder.with_name("unmounted"))

    assert await processor.process_once() == 0
    row = await get_dag(database, "orders")
    assert row is not None and row.is_active, "an unmounted folder is not 'every file deleted'"

    move(moved, dags_folder)
    assert await processor.process_once() == 0


async def test_run_picks_up_changes_while_it_runs(
    database: Database, dags_folder: Path, processor: DagProcessor, changed: asyncio.Event
) -> None:
    write(dags_folder, "orders.py", dag_source("orders", ["extract"]))
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    try:
        await wait_until(lambda: _has_tasks(database, "orders", 1), changed)
        write(dags_folder, "orders.py", dag_source("orders", ["extract", "load"]))
        await wait_until(lambda: _has_tasks(database, "orders", 2), changed, within=10)
        write(dags_folder, "late.py", dag_source("late"))
        await wait_until(lambda: _has_tasks(database, "late", 1), changed, within=10)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def _has_tasks(database: Database, dag_id: str, count: int) -> bool:
    row = await get_dag(database, dag_id)
    if row is None:
        return False
    version = await get_version(database, row.version_id)
    return len(version.serialized["tasks"]) == count


async def test_run_can_be_cancelled(
    database: Database, dags_folder: Path, processor: DagProcessor, changed: asyncio.Event
) -> None:
    write(dags_folder, "orders.py", dag_source("orders"))
    running = asyncio.create_task(processor.run(asyncio.Event()))
    await wait_until(lambda: _has_tasks(database, "orders", 1), changed)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)


async def test_run_waits_for_a_missing_folder(
    database: Database, dags_folder: Path, changed: asyncio.Event, tmp_path: Path
) -> None:
    missing = tmp_path / "not-yet"
    processor = make_processor(database, missing, changed, dag_rescan_interval=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    try:
        write(dags_folder, "orders.py", dag_source("orders"))
        move(dags_folder, missing)  # the folder appears while the processor runs
        await wait_until(lambda: _has_tasks(database, "orders", 1), changed)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def test_run_survives_a_failing_cycle(
    database: Database, dags_folder: Path, processor: DagProcessor, changed: asyncio.Event
) -> None:
    failed = asyncio.Event()
    catcher = _EventOnError(failed)
    logging.getLogger("app.dag_processor.supervisor").addHandler(catcher)
    async with database.engine.begin() as connection:
        await connection.run_sync(Base.metadata.tables["dag_file"].drop)
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    try:
        await asyncio.wait_for(failed.wait(), 10)
        async with database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        write(dags_folder, "orders.py", dag_source("orders"))
        await wait_until(lambda: _has_tasks(database, "orders", 1), changed)
    finally:
        stop.set()
        logging.getLogger("app.dag_processor.supervisor").removeHandler(catcher)
        await asyncio.wait_for(running, 10)


class _EventOnError(logging.Handler):
    def __init__(self, event: asyncio.Event) -> None:
        super().__init__(logging.ERROR)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()


# --- the loader and the child process ------------------------------------------------------------


async def test_child_prints_do_not_corrupt_the_result(dags_folder: Path) -> None:
    write(
        dags_folder,
        "noisy.py",
        "import os, sys\nprint('hello')\nsys.stdout.write('{')\nos.system('echo from a shell')\n"
        + dag_source("noisy"),
    )

    result = await parse_file(dags_folder, "noisy.py", 30)

    assert result.error is None
    assert [d["dag_id"] for d in result.dags] == ["noisy"]


async def test_child_imports_nothing_of_the_service(dags_folder: Path) -> None:
    write(
        dags_folder,
        "light.py",
        "import sys\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'sqlalchemy', 'fastapi'})\n"
        "assert not heavy, heavy\n" + dag_source("light"),
    )

    result = await parse_file(dags_folder, "light.py", 30)

    assert result.error is None, result.error


async def test_child_that_dies_is_reported(dags_folder: Path) -> None:
    write(dags_folder, "dies.py", "import os\nprint('last words', flush=True)\nos._exit(7)\n")

    result = await parse_file(dags_folder, "dies.py", 30)

    assert result.error is not None and "code 7" in result.error and "last words" in result.error


def test_load_dag_file_imports_afresh_and_in_isolation(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    write(first, "helper.py", "TASK = 'from_one'\n")
    write(second, "helper.py", "TASK = 'from_two'\n")
    source = dag_source("{name}", ["placeholder"]).replace("'placeholder'", "helper.TASK")
    write(first, "dags.py", "import helper\n" + source.replace("{name}", "one"))
    write(second, "dags.py", "import helper\n" + source.replace("{name}", "two"))

    [one] = load_dag_file(first, "dags.py")
    [two] = load_dag_file(second, "dags.py")
    write(first, "helper.py", "TASK = 'edited'\n")
    [again] = load_dag_file(first, "dags.py")

    assert (one.dag_id, list(one.tasks)) == ("one", ["from_one"])
    assert (two.dag_id, list(two.tasks)) == ("two", ["from_two"])
    assert list(again.tasks) == ["edited"], "siblings are imported afresh too"
    assert one.tasks["from_one"].function is not again.tasks["edited"].function
    assert not [m for m in sys.modules if m.startswith(MODULE_PREFIX) or m == "helper"]
