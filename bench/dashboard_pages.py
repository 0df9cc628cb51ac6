"""``python -m bench dashboard-pages``: how fast the dashboard's server-rendered pages answer with
1,000 DAGs and 100,000 task instances (issue 5: under 100 ms at p95).

A fresh PostgreSQL database is seeded (``bench.seed``, plus ``bench.seed_dashboard``: a running
run, DAG files, an audit log), a real ``weir api`` serves it, the bench signs in as the bootstrap
admin and finds which pages exist (``bench.dashboard_cases``), then requests them one at a time
(keep-alive), round-robin, ``--repeat`` rounds after warm-up rounds. The table shows p50 / p95 /
max in milliseconds as the client sees them, and what each page costs the database: a second
``weir api`` serves the same database with every statement logged (``bench.page_sql``) and each
page is requested once more, so the timing itself runs without logging. A page over
``--budget`` at p95 is flagged and its slowest statements shown. The JSON file keeps every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url

from bench.dashboard_cases import Discovery, Page, add_resources, discover, fetch, pages, signed_in
from bench.metrics import Summary, summarize
from bench.page_sql import PageSql, ServerLog, log_every_statement, parse_log
from bench.report import RESULTS, environment
from bench.seed import Seeded, SeedSizes, libpq_url, seed
from bench.seed_dashboard import DashboardSeeded, seed_dashboard, write_dag_files
from bench.served_api import serving_api
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.services import postgres_dsn

__all__ = ["PageResult", "main", "measure_pages"]

console = Console(width=None if sys.stdout.isatty() else 160)
QUIET_LOOPS = {"sweep_interval": 3600, "dag_rescan_interval": 3600}
"""The SQL pass's API: no safety sweep or rescan mixes its statements into a page's."""
_LONG_SELECT_LIST = re.compile(r"^SELECT .{80,}? FROM ")
_LONG_PARAMETER_LIST = re.compile(r"\(\$\d+(?:::\w+)?(?:, \$\d+(?:::\w+)?){3,}\)")


@dataclass
class PageResult:
    page: str
    path: str
    live: bool
    samples_ms: list[float] = field(default_factory=list)
    bytes: int = 0

    @property
    def summary(self) -> Summary:
        return summarize(self.samples_ms)


@dataclass
class Outcome:
    seeded: Seeded
    extras: DashboardSeeded
    seed_s: float
    discovery: Discovery = field(default_factory=Discovery)
    results: list[PageResult] = field(default_factory=list)
    sql: dict[str, PageSql] = field(default_factory=dict)  # page name -> its statements
    sql_note: str = ""


async def measure_pages(
    client: httpx.AsyncClient, found: Sequence[Page], warmup: int, repeat: int
) -> list[PageResult]:
    """Round-robin over the pages (warm-up rounds first), so that a burst of load on the shared
    machine spreads over every page instead of skewing one. Raises if a page stops answering."""
    results = [PageResult(p.name, p.path, p.live) for p in found]
    for round_ in range(warmup + repeat):
        for page, result in zip(found, results, strict=True):
            answer = await fetch(client, page)
            if answer.status != 200:
                raise RuntimeError(f"GET {page.path}: {answer.status} {answer.body[:300]}")
            result.bytes = len(answer.body.encode())
            if round_ >= warmup:
                result.samples_ms.append(answer.ms)
    for r in results:
        s = r.summary
        console.print(
            f"{escape(r.page):<40} p50 {s.p50:7.1f}  p95 {s.p95:7.1f}  max {s.max:7.1f} ms"
        )
    return results


async def capture_sql(
    database_url: str, workdir: Path, env: Mapping[str, object], found: Sequence[Page]
) -> tuple[dict[str, PageSql], str]:
    """Each page's statements, from a second API whose sessions log every statement."""
    admin = libpq_url(postgres_dsn())
    log = await ServerLog.locate(admin)
    if log is None:
        return {}, "SQL not captured: the server log is not readable through pg_read_file here"
    database = make_url(database_url).database
    assert database is not None
    await log_every_statement(admin, database)
    captured: dict[str, PageSql] = {}
    password = str(env["bootstrap_admin_password"])
    async with (
        serving_api(database_url, workdir, {**env, **QUIET_LOOPS}) as api,
        signed_in(api.base_url, password) as client,
    ):
        for page in found:
            try:
                await fetch(client, page)  # warm the API's caches, as the timed rounds did
                offset = await log.size()
                await fetch(client, page)
            except httpx.HTTPError as error:  # diagnostics only: the timing has been done
                console.print(f"[red]SQL pass: GET {escape(page.path)}: {error!r}[/]")
                continue
            await asyncio.sleep(0.05)  # the log's last lines, written as the answer left
            captured[page.name] = parse_log(await log.read_from(offset), database)
    return captured, f"SQL from {log.path} (log_min_duration_statement = 0 on the bench database)"


async def run(args: Namespace) -> Outcome:
    """Seed a new database, measure on it, drop it (unless ``--keep``)."""
    sizes = SeedSizes(args.dags, args.runs, args.big_dag_runs, args.task_instances,
                      args.tasks_per_run)  # fmt: skip
    database_url = await create_postgres_database()
    try:
        clock = time.monotonic()
        seeded = await seed(database_url, sizes)
        extras = await seed_dashboard(database_url, seeded, audit_entries=args.audit_entries)
        outcome = Outcome(seeded, extras, time.monotonic() - clock)
        console.print(f"seeded {seeded.runs:,} runs, {seeded.task_instances:,} task instances, "
                      f"{sizes.dags:,} DAGs in {outcome.seed_s:.1f} s")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="weir-bench-dashboard-") as tmp:
            workdir = Path(tmp)
            write_dag_files(workdir / "dags", extras)
            # The SQL pass's API reads the same secrets: the same key decrypts them.
            env = {
                "bootstrap_admin_password": secrets.token_urlsafe(16),
                "secret_key": secrets.token_urlsafe(32),
            }
            await _time_pages(database_url, workdir, env, outcome, args)
            if args.sql and outcome.discovery.found:
                outcome.sql, outcome.sql_note = await capture_sql(
                    database_url, workdir, env, outcome.discovery.found
                )
    finally:
        if args.keep:
            console.print(f"kept the database: {database_url}")
        else:
            await drop_postgres_database(database_url)
    return outcome


async def _time_pages(
    database_url: str, workdir: Path, env: Mapping[str, str], outcome: Outcome, args: Namespace
) -> None:
    async with serving_api(database_url, workdir, env) as api:
        resources = await add_resources(api, args.connections, args.variables)
        candidates = pages(outcome.seeded, outcome.extras, resources)
        async with signed_in(api.base_url, env["bootstrap_admin_password"]) as client:
            outcome.discovery = await discover(client, candidates)
            console.print(f"{len(outcome.discovery.found)} pages found, "
                          f"{len(outcome.discovery.missing)} missing, "
                          f"{len(outcome.discovery.failed)} failing")  # fmt: skip
            outcome.results = await measure_pages(
                client, outcome.discovery.found, args.warmup, args.repeat
            )


def print_report(outcome: Outcome, args: Namespace) -> None:
    sizes = outcome.seeded.sizes
    table = Table(
        title=f"Weir dashboard pages: {sizes.dags:,} DAGs, {outcome.seeded.runs:,} runs, "
        f"{outcome.seeded.task_instances:,} task instances",
        caption=f"ms as the client sees them, {args.repeat} rounds of sequential requests after "
        f"{args.warmup} warm-up rounds; PostgreSQL, one `weir api` process, signed in as admin. "
        "live = time to the stream's first event (its first render). queries / SQL ms: one "
        f"request, from the server log. Budget: p95 < {args.budget:.0f} ms.",
    )
    for name in ("page", "path"):
        table.add_column(name, overflow="fold")
    table.add_column("ms\np50 / p95 / max", justify="right")
    for name in ("queries", "SQL ms", "KiB", ""):
        table.add_column(name, justify="right")
    for r in outcome.results:
        s, sql = r.summary, outcome.sql.get(r.page)
        over = s.p95 > args.budget
        table.add_row(
            escape(r.page), escape(r.path), f"{s.p50:.1f} / {s.p95:.1f} / {s.max:.1f}",
            str(sql.queries) if sql else "-", f"{sql.total_ms:.1f}" if sql else "-",
            f"{r.bytes / 1024:.0f}", "[red]OVER[/]" if over else "ok",
        )  # fmt: skip
    console.print(table)
    if outcome.sql_note:
        console.print(f"[dim]{escape(outcome.sql_note)}[/]")
    for page in outcome.discovery.missing:
        console.print(
            f"[yellow]missing (no route yet):[/] {escape(page.name)}  {escape(page.path)}"
        )
    for name, problem in outcome.discovery.failed.items():
        console.print(f"[red]failing:[/] {escape(name)}: {escape(problem)}")
    _print_slowest_sql(outcome, args.budget)


def _print_slowest_sql(outcome: Outcome, budget: float) -> None:
    for r in outcome.results:
        sql = outcome.sql.get(r.page)
        if r.summary.p95 <= budget or sql is None:
            continue
        console.rule(f"{escape(r.page)}: p95 {r.summary.p95:.1f} ms over budget")
        rest = r.summary.p50 - sql.total_ms
        console.print(
            f"{sql.queries} queries, {sql.total_ms:.1f} ms of SQL; the rest of the p50 "
            f"({rest:.1f} ms) is Python, templates and HTTP"
        )
        for statement in sql.slowest():
            text = _LONG_SELECT_LIST.sub("SELECT … FROM ", " ".join(statement.sql.split()), 1)
            text = _LONG_PARAMETER_LIST.sub(lambda m: f"({m[0].count('$')} values)", text)
            console.print(f"  {statement.ms:8.2f} ms  {escape(text[:600])}")


def write_results(outcome: Outcome, args: Namespace, started: datetime) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-dashboard-pages.json"
    document = {
        "benchmark": "dashboard-pages",
        "started_at": started.isoformat(),
        "environment": {**environment(), "load_average": os.getloadavg()},
        "config": dict(vars(args)),
        "seeded": asdict(outcome.seeded),
        "dashboard_seeded": {**asdict(outcome.extras), "dag_files": list(outcome.extras.dag_files)},
        "seed_s": outcome.seed_s,
        "budget_ms": args.budget,
        "results": [_result_json(r, outcome.sql.get(r.page), args.budget) for r in outcome.results],
        "missing": [asdict(p) for p in outcome.discovery.missing],
        "failed": outcome.discovery.failed,
        "sql_note": outcome.sql_note,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def _result_json(result: PageResult, sql: PageSql | None, budget: float) -> dict[str, Any]:
    captured = None
    if sql is not None:
        statements = [asdict(s) for s in sql.statements]
        captured = {"queries": sql.queries, "total_ms": sql.total_ms, "statements": statements}
    return {**asdict(result), "summary_ms": asdict(result.summary),
            "over_budget": result.summary.p95 > budget, "sql": captured}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    defaults = SeedSizes()
    parser = argparse.ArgumentParser(
        prog="python -m bench dashboard-pages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dags", type=int, default=defaults.dags, help="DAGs to seed")
    parser.add_argument("--runs", type=int, default=defaults.runs, help="runs, all DAGs")
    parser.add_argument("--big-dag-runs", type=int, default=defaults.big_dag_runs,
                        help="runs of the big DAG")  # fmt: skip
    parser.add_argument("--task-instances", type=int, default=defaults.task_instances)
    parser.add_argument("--tasks-per-run", type=int, default=defaults.tasks_per_run)
    parser.add_argument("--audit-entries", type=int, default=10_000, help="audit log rows")
    parser.add_argument("--connections", type=int, default=20, help="made through the API")
    parser.add_argument("--variables", type=int, default=50, help="made through the API")
    parser.add_argument("--repeat", type=int, default=30, help="measured rounds (all pages)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    parser.add_argument("--budget", type=float, default=100.0, help="p95 ms a page may take")
    parser.add_argument(
        "--no-sql", dest="sql", action="store_false", help="skip reading each page's SQL"
    )
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Exits non-zero when a page fails (not when one is over budget: that is a finding)."""
    args = parse_args(argv)
    started, clock = datetime.now(UTC), time.monotonic()
    console.print(f"load average before: {os.getloadavg()}")
    outcome = asyncio.run(run(args))
    print_report(outcome, args)
    path = write_results(outcome, args, started)
    console.print(f"results: {path}\nload average after: {os.getloadavg()}; "
                  f"the whole bench took {time.monotonic() - clock:.1f} s")  # fmt: skip
    return 1 if outcome.discovery.failed else 0
