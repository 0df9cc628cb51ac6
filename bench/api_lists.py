"""``python -m bench api-lists``: how fast the REST API's lists answer on 100,000 runs (issue 4).

A fresh PostgreSQL database is seeded (``bench.seed``), a real ``weir api`` process serves it, and
the list cases are requested one at a time (keep-alive), round-robin, ``--repeat`` rounds after
warm-up rounds. The table shows p50 / p95 / max in milliseconds as the client sees them, and the
same for the route's SQL alone (run by the bench through SQLAlchemy), which splits the database's
part from the service's; the JSON file keeps every sample.

For a case slower than ``--explain-over`` ms at p95, the ``EXPLAIN (ANALYZE, BUFFERS)`` of its
SQL goes to ``bench/results/<timestamp>-api-lists-explain.txt``. ``--index DDL`` (repeatable)
measures every case again with those indexes created by hand, for a before/after of a proposal;
they are dropped afterwards. The SQL mirrors the routes' (``paginate``: a count, then the page):
keep the two in step when a list's query changes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Select, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from app.db.engine import Database, create_database
from app.db.models import Dag, DagRun, TaskInstance
from bench.metrics import Summary, summarize
from bench.report import RESULTS, environment
from bench.seed import Seeded, SeedSizes, libpq_url, seed
from bench.served_api import serving_api
from tests.support.databases import create_postgres_database, drop_postgres_database

__all__ = ["ListCase", "cases", "main", "request_once"]

console = Console(width=None if sys.stdout.isatty() else 140)
PAGE = 100


@dataclass(frozen=True)
class ListCase:
    """One list request, the rows it should count, and the SQL its route runs (for EXPLAIN)."""

    name: str
    path: str
    params: dict[str, Any]
    total: int
    base: Select[Any]
    ordering: tuple[Any, ...]

    @property
    def offset(self) -> int:
        return int(self.params.get("offset", 0))

    def statements(self) -> dict[str, Select[Any]]:
        count = select(func.count()).select_from(self.base.subquery())
        page = self.base.order_by(*self.ordering).limit(PAGE).offset(self.offset)
        return {"count": count, "page": page}


def cases(seeded: Seeded) -> list[ListCase]:
    """Issue 4's lists, plus the sorts a dashboard asks for (newest logical date or start)."""
    big, deep, big_deep = seeded.big_dag_id, int(seeded.runs * 0.9), seeded.sizes.big_dag_runs // 2
    runs, newest = select(DagRun), (DagRun.id.desc(), DagRun.id.desc())
    by_date = (DagRun.logical_date.desc(), DagRun.id.desc())
    big_runs = select(DagRun).where(DagRun.dag_id == big)
    tagged = select(Dag).where(type_coerce(Dag.tags, JSONB).contains([seeded.tag]))
    by_id = (Dag.dag_id.asc(), Dag.dag_id.asc())
    tis = select(TaskInstance).where(TaskInstance.dag_run_id == seeded.sample_run_pk)
    all_path, run_path = "/api/v1/runs", f"/api/v1/dags/{big}/runs"
    total, big_total = seeded.runs, seeded.sizes.big_dag_runs
    return [
        ListCase("runs, first page", all_path, {}, total, runs, newest),
        ListCase(f"runs, offset {deep:,}", all_path, {"offset": deep}, total, runs, newest),
        ListCase("runs, state=failed", all_path, {"state": "failed"}, seeded.failed_runs,
                 runs.where(DagRun.state.in_(["failed"])), newest),
        ListCase("runs, -logical_date", all_path, {"order_by": "-logical_date"}, total, runs,
                 by_date),
        ListCase("runs, -start_date", all_path, {"order_by": "-start_date"}, total, runs,
                 (DagRun.start_date.desc(), DagRun.id.desc())),
        ListCase("big DAG runs, -logical_date", run_path, {"order_by": "-logical_date"},
                 big_total, big_runs, by_date),
        ListCase(f"  same, offset {big_deep:,}", run_path,
                 {"order_by": "-logical_date", "offset": big_deep}, big_total, big_runs, by_date),
        ListCase("dags, first page", "/api/v1/dags", {}, seeded.sizes.dags, select(Dag), by_id),
        ListCase(f"dags, tag={seeded.tag}", "/api/v1/dags", {"tag": seeded.tag},
                 seeded.tagged_dags, tagged, by_id),
        ListCase("task instances of a run", f"{run_path}/{seeded.sample_run_id}/tasks", {},
                 seeded.sizes.tasks_per_run, tis, (TaskInstance.id.asc(), TaskInstance.id.asc())),
    ]  # fmt: skip


@dataclass
class CaseResult:
    case: str
    request: str
    total: int
    samples_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)

    @property
    def summary(self) -> Summary:
        return summarize(self.samples_ms)

    @property
    def sql(self) -> Summary:
        """The case's count and page queries alone, through SQLAlchemy as the route runs them."""
        return summarize(self.sql_ms)


def request_of(case: ListCase) -> str:
    return f"GET {httpx.URL(case.path, params={'limit': PAGE, **case.params})}"


async def request_once(client: httpx.AsyncClient, case: ListCase) -> tuple[float, int]:
    """One request's wall time in ms, and the ``total`` it answered (checked against the seed)."""
    started = time.perf_counter()
    response = await client.get(case.path, params={"limit": PAGE, **case.params})
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    if response.status_code != 200:
        raise RuntimeError(f"{request_of(case)}: {response.status_code} {response.text[:300]}")
    total = int(response.json()["total"])
    if total != case.total:
        raise RuntimeError(f"{request_of(case)}: total {total}, the seed wrote {case.total}")
    return elapsed_ms, total


class Explain(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, BUFFERS)`` of a statement, bound exactly as SQLAlchemy binds it."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain_sql(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, BUFFERS) " + compiler.process(element.statement, **kw)


def _sql_text(statement: Select[Any], dialect: Dialect) -> str:
    """The statement with its values inlined where SQLAlchemy can (JSON values it cannot)."""
    try:
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    except CompileError:
        return str(statement.compile(dialect=dialect))


async def explain(database: Database, slow: Sequence[ListCase]) -> str:
    """The plans of every statement of the ``slow`` cases, as text."""
    parts: list[str] = []
    async with database.engine.connect() as connection:
        for case in slow:
            for name, statement in case.statements().items():
                plan = (await connection.execute(Explain(statement))).scalars().all()
                sql = _sql_text(statement, database.engine.dialect)
                parts.append(f"== {case.name}: {name}\n{sql}\n\n" + "\n".join(plan) + "\n")
    return "\n".join(parts)


async def _index_names(database_url: str) -> set[str]:
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        rows = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
        )
    finally:
        await connection.close()
    return {row["indexname"] for row in rows}


async def _execute(database_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def query_once(database: Database, case: ListCase) -> float:
    """The case's count and page in one session, as the route runs them: the database's part."""
    statements = case.statements()
    started = time.perf_counter()
    async with database.sessions() as session:
        await session.scalar(statements["count"])
        (await session.scalars(statements["page"])).all()
    return (time.perf_counter() - started) * 1000.0


async def measure_all(
    client: httpx.AsyncClient, database: Database, listed: Sequence[ListCase], args: Namespace
) -> list[CaseResult]:
    """Round-robin over the cases (warm-up rounds first), so that a burst of load on the shared
    machine spreads over every case instead of skewing one."""
    results = [CaseResult(case.name, request_of(case), total=-1) for case in listed]
    for round_ in range(args.warmup + args.repeat):
        for case, result in zip(listed, results, strict=True):
            elapsed_ms, result.total = await request_once(client, case)
            sql_ms = await query_once(database, case)
            if round_ >= args.warmup:
                result.samples_ms.append(elapsed_ms)
                result.sql_ms.append(sql_ms)
    for result in results:
        s, q = result.summary, result.sql
        console.print(f"{result.case:<32} p50 {s.p50:7.1f}  p95 {s.p95:7.1f}  max {s.max:7.1f} ms"
                      f"   SQL p50 {q.p50:6.1f}  p95 {q.p95:6.1f}")  # fmt: skip
    return results


@dataclass
class Outcome:
    seeded: Seeded
    seed_s: float
    before: list[CaseResult]
    after: list[CaseResult] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    plans: str = ""


async def run(args: Namespace) -> Outcome:
    """Seed a new database, measure on it, drop it (unless ``--keep``)."""
    sizes = SeedSizes(args.dags, args.runs, args.big_dag_runs, args.task_instances,
                      args.tasks_per_run)  # fmt: skip
    database_url = await create_postgres_database()
    try:
        clock = time.monotonic()
        seeded = await seed(database_url, sizes)
        seed_s = time.monotonic() - clock
        console.print(f"seeded {seeded.runs:,} runs, {seeded.task_instances:,} task instances, "
                      f"{sizes.dags:,} DAGs in {seed_s:.1f} s")  # fmt: skip
        outcome = Outcome(seeded, seed_s, before=[])
        database = create_database(database_url, pool_size=1)
        try:
            await measure_seeded(database_url, database, outcome, args)
        finally:
            await database.dispose()
    finally:
        if args.keep:
            console.print(f"kept the database: {database_url}")
        else:
            await drop_postgres_database(database_url)
    return outcome


async def measure_seeded(
    database_url: str, database: Database, outcome: Outcome, args: Namespace
) -> None:
    """Every case, the plans of the slow ones, then every case again with ``--index``."""
    listed = cases(outcome.seeded)
    with tempfile.TemporaryDirectory(prefix="weir-bench-api-lists-") as tmp:
        async with serving_api(database_url, Path(tmp)) as client:
            outcome.before = await measure_all(client, database, listed, args)
            slow = [c for c, r in zip(listed, outcome.before, strict=True)
                    if r.summary.p95 > args.explain_over]  # fmt: skip
            outcome.explained = [c.name for c in slow]
            if slow:
                outcome.plans = await explain(database, slow)
            if args.index:
                existing = await _index_names(database_url)
                await _execute(database_url, *args.index, "ANALYZE")
                try:
                    console.rule("with --index")
                    outcome.after = await measure_all(client, database, listed, args)
                finally:
                    added = await _index_names(database_url) - existing
                    await _execute(database_url, *(f'DROP INDEX "{n}"' for n in sorted(added)))


def print_table(outcome: Outcome, args: Namespace) -> None:
    sizes = outcome.seeded.sizes
    table = Table(
        title=f"Weir REST lists: {outcome.seeded.runs:,} runs, {sizes.dags:,} DAGs "
        f"({sizes.big_dag_runs:,} runs in one), {outcome.seeded.task_instances:,} task instances",
        caption=f"HTTP: ms as the client sees them, {args.repeat} rounds of sequential "
        f"requests after {args.warmup} warm-up rounds; limit={PAGE}; PostgreSQL, one `weir api` "
        "process. SQL: the route's count + page queries alone, through SQLAlchemy in the bench.",
    )
    table.add_column("case")
    table.add_column("request", overflow="fold")
    table.add_column("total", justify="right")
    table.add_column("HTTP ms\np50 / p95 / max", justify="right")
    table.add_column("SQL ms\np50 / p95", justify="right")
    if outcome.after:
        table.add_column("with --index: HTTP ms\np50 / p95 / max", justify="right")
        table.add_column("SQL ms\np50 / p95", justify="right")
    for n, result in enumerate(outcome.before):
        row = [result.case, result.request.removeprefix("GET "), f"{result.total:,}"]
        for measured in [result, *outcome.after[n : n + 1]]:
            s, q = measured.summary, measured.sql
            row += [f"{s.p50:.1f} / {s.p95:.1f} / {s.max:.1f}", f"{q.p50:.1f} / {q.p95:.1f}"]
        table.add_row(*row)
    console.print(table)


def write_results(outcome: Outcome, args: Namespace, started: datetime) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-api-lists"
    if outcome.plans:
        Path(f"{stem}-explain.txt").write_text(outcome.plans)
        console.print(f"EXPLAIN of {', '.join(outcome.explained)}: {stem}-explain.txt")

    def results(rows: list[CaseResult]) -> list[dict[str, Any]]:
        return [{**asdict(r), "summary_ms": asdict(r.summary), "sql_summary_ms": asdict(r.sql)}
                for r in rows]  # fmt: skip

    document = {
        "benchmark": "api-lists",
        "started_at": started.isoformat(),
        "environment": {**environment(), "load_average": os.getloadavg()},
        "config": dict(vars(args)),
        "seeded": asdict(outcome.seeded),
        "seed_s": outcome.seed_s,
        "results": results(outcome.before),
        "with_indexes": results(outcome.after),
        "explained": outcome.explained,
    }
    path = Path(f"{stem}.json")
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    defaults = SeedSizes()
    parser = argparse.ArgumentParser(
        prog="python -m bench api-lists",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dags", type=int, default=defaults.dags, help="DAGs to seed")
    parser.add_argument("--runs", type=int, default=defaults.runs, help="runs, all DAGs")
    parser.add_argument(
        "--big-dag-runs", type=int, default=defaults.big_dag_runs, help="runs of the big DAG"
    )
    parser.add_argument(
        "--task-instances", type=int, default=defaults.task_instances, help="in all"
    )
    parser.add_argument(
        "--tasks-per-run", type=int, default=defaults.tasks_per_run, help="of a run that has any"
    )
    parser.add_argument("--repeat", type=int, default=50, help="measured rounds (all cases)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first")
    parser.add_argument("--explain-over", type=float, default=50.0, help="p95 ms to EXPLAIN at")
    parser.add_argument("--index", action="append", default=[], help="CREATE INDEX … to try")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started, clock = datetime.now(UTC), time.monotonic()
    console.print(f"load average before: {os.getloadavg()}")
    outcome = asyncio.run(run(args))
    print_table(outcome, args)
    path = write_results(outcome, args, started)
    console.print(f"results: {path}\nload average after: {os.getloadavg()}; "
                  f"the whole bench took {time.monotonic() - clock:.1f} s")  # fmt: skip
    return 0
