"""``python -m bench.bound``: measure the minimal core once and print its figures."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from bench.bound.measure import FANOUT_REPEATS, BoundResult, measure_bound
from bench.bound.pipeline import PREFETCH
from tests.support.services import postgres_dsn, rabbitmq_url


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bound", description=__doc__)
    parser.add_argument("--fanout", type=int, default=500, help="no-op tasks in the fan-out")
    parser.add_argument("--chain", type=int, default=50, help="no-op tasks in the chain")
    parser.add_argument("--triggers", type=int, default=20, help="sequential one-task runs")
    parser.add_argument(
        "--database-url",
        default=postgres_dsn(),
        help="the PostgreSQL server (SQLAlchemy form); a scratch database is made on it",
    )
    parser.add_argument("--amqp-url", default=rabbitmq_url(), help="the RabbitMQ server")
    return parser.parse_args(argv)


def print_result(console: Console, result: BoundResult, caption: str) -> None:
    table = Table(title="Bound: a minimal batched core (asyncpg + aio-pika)", caption=caption)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("what")
    table.add_row(
        f"fan-out of {result.fanout_tasks}",
        f"{result.fanout_tasks_per_s:,.0f} tasks/s",
        f"first queueing statement → last success committed (median of {FANOUT_REPEATS} runs)",
    )
    table.add_row(
        "CPU per task", f"{result.cpu_ms_per_task:.2f} ms", "this process (both sides), median"
    )
    table.add_row(
        "chain hop p50 / p95",
        f"{result.hop_p50_ms:.2f} / {result.hop_p95_ms:.2f} ms",
        "downstream started_at - upstream ended_at",
    )
    table.add_row(
        "trigger p50", f"{result.trigger_p50_ms:.2f} ms", "run inserted + queued → task running"
    )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(
        measure_bound(
            args.database_url,
            args.amqp_url,
            fanout=args.fanout,
            chain=args.chain,
            triggers=args.triggers,
        )
    )
    caption = (
        f"One process (both sides and the measurement share one event loop); prefetch {PREFETCH}; "
        "quorum queue, persistent messages, publisher confirms; PostgreSQL synchronous commit as "
        "the server has it."
    )
    print_result(Console(width=None if sys.stdout.isatty() else 120), result, caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())
