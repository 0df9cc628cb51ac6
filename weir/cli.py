"""``weir``: the command line, and the composition root.

This is the one module that may import both ``app`` and ``workers``, and only inside command
bodies, so that ``weir --help`` stays fast and a DAG file's ``import weir`` stays light.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from weir.cli_resources import connections_app, variables_app
from weir.cli_secrets import secrets_app
from weir.cli_users import tokens_app, users_app
from weir.config import Settings
from weir.data_dir import make_private, prepare_data_dir, read_or_create_secret
from weir.errors import ConfigError, WeirError
from weir.remote import backfill, dags_app, runs_app, tasks_app
from weir.runtime import QuietServer, configure_logging, run_event_loop, stop_on_signals

if TYPE_CHECKING:
    from app.db.engine import Database

__all__ = ["cli", "main"]

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
cli = typer.Typer(
    help="Weir: an event-driven workflow orchestrator. Start with `weir standalone`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the metadata database.", no_args_is_help=True)
cli.add_typer(db_app, name="db")
cli.add_typer(dags_app, name="dags")
cli.add_typer(runs_app, name="runs")
cli.add_typer(tasks_app, name="tasks")
cli.add_typer(connections_app, name="connections")
cli.add_typer(variables_app, name="variables")
cli.add_typer(users_app, name="users")
cli.add_typer(tokens_app, name="tokens")
cli.add_typer(secrets_app, name="secrets")
cli.command()(backfill)

Host = Annotated[str | None, typer.Option(help="Interface to listen on.")]
Port = Annotated[int | None, typer.Option(help="Port to listen on.")]
DagsFolder = Annotated[
    Path | None, typer.Option("--dags-folder", help="Folder of DAG files (WEIR_DAGS_FOLDER).")
]


def load_settings(**flags: Any) -> Settings:
    """Flags win over WEIR_* variables, which win over weir.toml."""
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as error:
        for problem in error.errors():
            name = "WEIR_" + "_".join(str(p) for p in problem["loc"]).upper()
            errors.print(f"[red]error:[/] {name}: {escape(problem['msg'])}")
        raise typer.Exit(2) from error


def run_command(coroutine: Any) -> None:
    try:
        run_event_loop(coroutine)
    except WeirError as error:
        errors.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from error


@cli.command()
def standalone(
    host: Host = None,
    port: Port = None,
    dags_folder: DagsFolder = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the SQLite file and keys live.")
    ] = None,
) -> None:
    """Run everything in one process: API, scheduler and a worker, on a SQLite file and an
    in-process queue. Prints the dashboard URL, the admin login and an admin token."""
    settings = load_settings(host=host, port=port, dags_folder=dags_folder, data_dir=data_dir)
    settings = _standalone_settings(settings)
    configure_logging(settings.log_level)
    run_command(_standalone(settings))


def _standalone_settings(settings: Settings) -> Settings:
    """Fill in what a newcomer should not have to: database file, secret key, admin token and
    password (kept in the data directory, so a restart keeps them)."""
    data_dir = settings.data_dir
    prepare_data_dir(data_dir)  # 0700, its files 0600 (weir.data_dir)
    updates: dict[str, Any] = {"api_url": f"http://{settings.host}:{settings.port}"}
    if "database_url" not in settings.model_fields_set:
        make_private(data_dir / "weir.db")
        updates["database_url"] = f"sqlite+aiosqlite:///{(data_dir / 'weir.db').resolve()}"
    if settings.secret_key is None:
        updates["secret_key"] = read_or_create_secret(data_dir / "secret_key")
    if settings.bootstrap_admin_token is None:
        updates["bootstrap_admin_token"] = read_or_create_secret(data_dir / "admin_token", "weir_")
    if settings.bootstrap_admin_password is None:
        updates["bootstrap_admin_password"] = read_or_create_secret(data_dir / "admin_password")
    return Settings(**{**settings.model_dump(exclude_unset=True), **updates})


async def _standalone(settings: Settings) -> None:
    from app.db.engine import create_database
    from app.db.migrate import upgrade_async
    from app.main import create_app
    from weir.broker.memory import MemoryBroker
    from workers.main import Worker

    await upgrade_async(settings.database_url)
    database = create_database(settings.database_url)
    broker = MemoryBroker()
    await broker.connect()
    app = create_app(settings, database, broker, manage_broker=False)
    server = QuietServer(
        app,
        settings.host,
        settings.port,
        settings.log_level,
        on_shutdown=database.changes.close,
        head_timeout=settings.request_head_timeout,
    )
    stop = asyncio.Event()
    stop_on_signals(stop)
    token = settings.bootstrap_admin_token
    console.print(f"Weir is starting at [bold]{settings.api_url}[/] with DAGs from "
                  f"[bold]{settings.dags_folder}[/].")  # fmt: skip
    _print_admin_login(settings)
    console.print(f"Admin API token: [bold]{token.get_secret_value() if token else ''}[/]")
    serving = asyncio.create_task(server.serve(), name="http")
    working = asyncio.create_task(Worker(settings, broker).run(stop), name="worker")
    try:
        await asyncio.wait({serving, working}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # if the server died, the worker stops too
        await working  # the worker drains first: it needs the API to hand work back
    finally:
        server.shutdown()
        await asyncio.gather(serving, return_exceptions=True)
        await broker.close()
        await database.dispose()


def _print_admin_login(settings: Settings) -> None:
    password = settings.bootstrap_admin_password
    shown = escape(password.get_secret_value()) if password else ""
    console.print(f"Dashboard: [bold]{settings.api_url}/[/]  (log in as [bold]admin[/], "
                  f"password [bold]{shown}[/])")  # fmt: skip


@cli.command()
def api(host: Host = None, port: Port = None, dags_folder: DagsFolder = None) -> None:
    """Serve the REST API, the execution API for workers and the dashboard, and run the
    scheduler, outbox relay and DAG processor. Run as many replicas as you like."""
    settings = load_settings(host=host, port=port, dags_folder=dags_folder)
    configure_logging(settings.log_level)
    run_command(_api(settings))


async def _api(settings: Settings) -> None:
    from app.db.engine import create_database
    from app.main import create_app
    from weir.broker import create_broker

    _refuse_memory_broker(settings, "api")
    database = create_database(settings.database_url)
    broker = create_broker(settings)
    try:
        app = create_app(settings, database, broker, manage_broker=False)
        # Checked here, not only in the app's lifespan, so that a missing `weir db upgrade` or an
        # unreachable service is one clear line instead of uvicorn's startup traceback.
        await check_database(settings, database)
        await broker.connect()
        try:
            await _serve(
                QuietServer(
                    app,
                    settings.host,
                    settings.port,
                    settings.log_level,
                    on_shutdown=database.changes.close,
                    head_timeout=settings.request_head_timeout,
                )
            )
        finally:
            await broker.close()
    finally:
        await database.dispose()


async def _serve(server: QuietServer) -> None:
    """Serve until SIGINT/SIGTERM (or until the server stops by itself)."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    serving = asyncio.create_task(server.serve(), name="http")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.shutdown()
        stopping.cancel()
        await asyncio.gather(serving, stopping, return_exceptions=True)


def _refuse_memory_broker(settings: Settings, command: str) -> None:
    """memory:// is a queue inside one process: only `weir standalone` has both of its ends."""
    if settings.broker_url.startswith("memory://"):
        raise ConfigError(
            f"WEIR_BROKER_URL is {settings.broker_url!r}, the in-process queue, which only works "
            f"inside `weir standalone`: a separate `weir {command}` would never exchange a task "
            "with anyone. Point every `weir api` and `weir worker` at the same RabbitMQ, e.g. "
            "WEIR_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/, or run `weir standalone`."
        )


async def check_database(settings: Settings, database: Database) -> None:
    """Raise ``ConfigError`` naming the fix unless the database answers with the current schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.migrate import check_schema_is_current

    try:
        await check_schema_is_current(database)
    except (OSError, SQLAlchemyError) as error:
        raise ConfigError(_database_problem(settings.database_url, error)) from error


def _database_problem(url: str, error: Exception) -> str:
    from sqlalchemy.engine import make_url

    where = make_url(url).render_as_string(hide_password=True)
    reason = " ".join(str(getattr(error, "orig", None) or error).split())
    return (
        f"Cannot use the database at {where} ({reason}). Check WEIR_DATABASE_URL, that the "
        "database server is running and that the database exists (`createdb`), then run "
        "`weir db upgrade`."
    )


@cli.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues to serve.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Attempts run at once.")] = None,
    dags_folder: DagsFolder = None,
) -> None:
    """Run tasks from the broker's queues. Needs WEIR_BROKER_URL and WEIR_API_URL; never the
    database. On SIGTERM it stops taking work and lets running tasks finish."""
    settings = load_settings(
        worker_queues=queues, worker_concurrency=concurrency, dags_folder=dags_folder
    )
    configure_logging(settings.log_level)
    run_command(_worker(settings))


async def _worker(settings: Settings) -> None:
    from weir.broker import create_broker
    from workers.main import Worker

    _refuse_memory_broker(settings, "worker")
    broker = create_broker(settings)
    await broker.connect()
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        await Worker(settings, broker).run(stop)
    finally:
        await broker.close()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of WEIR_DATABASE_URL to this version of Weir."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.migrate import upgrade

    settings = load_settings()
    try:
        upgrade(settings.database_url)
    except (OSError, SQLAlchemyError) as error:
        errors.print(f"[red]error:[/] {escape(_database_problem(settings.database_url, error))}")
        raise typer.Exit(2) from error
    console.print("The database schema is up to date.")


def main() -> None:
    cli()
