"""``weir``: the command line, and the composition root.

This is the one module that may import both ``app`` and ``workers``, and only inside command
bodies, so that ``weir --help`` stays fast and a DAG file's ``import weir`` stays light.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from weir.config import Settings
from weir.errors import WeirError
from weir.remote import dags_app, runs_app
from weir.runtime import QuietServer, configure_logging, stop_on_signals

__all__ = ["cli", "main"]

console = Console()
cli = typer.Typer(
    help="Weir: an event-driven workflow orchestrator. Start with `weir standalone`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the metadata database.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
cli.add_typer(db_app, name="db")
cli.add_typer(dags_app, name="dags")
cli.add_typer(runs_app, name="runs")
cli.add_typer(tokens_app, name="tokens")

Host = Annotated[str | None, typer.Option(help="Interface to listen on.")]
Port = Annotated[int | None, typer.Option(help="Port to listen on.")]
DagsFolder = Annotated[
    Path | None, typer.Option("--dags-folder", help="Folder of DAG files (WEIR_DAGS_FOLDER).")
]


def _settings(**flags: Any) -> Settings:
    """Flags win over WEIR_* variables, which win over weir.toml."""
    return Settings(**{k: v for k, v in flags.items() if v is not None})


def _run(coroutine: Any) -> None:
    try:
        asyncio.run(coroutine)
    except WeirError as error:
        console.print(f"[red]error:[/] {error}")
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
    in-process queue. Prints the dashboard URL and an admin token."""
    settings = _settings(host=host, port=port, dags_folder=dags_folder, data_dir=data_dir)
    settings = _standalone_settings(settings)
    configure_logging(settings.log_level)
    _run(_standalone(settings))


def _standalone_settings(settings: Settings) -> Settings:
    """Fill in what a newcomer should not have to: database file, secret key, admin token."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    updates: dict[str, Any] = {"api_url": f"http://{settings.host}:{settings.port}"}
    if "database_url" not in settings.model_fields_set:
        updates["database_url"] = f"sqlite+aiosqlite:///{(data_dir / 'weir.db').resolve()}"
    if settings.secret_key is None:
        updates["secret_key"] = _read_or_create(data_dir / "secret_key")
    if settings.bootstrap_admin_token is None:
        updates["bootstrap_admin_token"] = _read_or_create(data_dir / "admin_token", "weir_")
    return Settings(**{**settings.model_dump(exclude_unset=True), **updates})


def _read_or_create(path: Path, prefix: str = "") -> str:
    if not path.exists():
        path.write_text(prefix + secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


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
    server = QuietServer(app, settings.host, settings.port, settings.log_level)
    stop = asyncio.Event()
    stop_on_signals(stop)
    token = settings.bootstrap_admin_token
    console.print(f"Weir is starting at [bold]{settings.api_url}[/] with DAGs from "
                  f"[bold]{settings.dags_folder}[/].")  # fmt: skip
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


@cli.command()
def api(host: Host = None, port: Port = None, dags_folder: DagsFolder = None) -> None:
    """Serve the REST API, the execution API for workers and the dashboard, and run the
    scheduler, outbox relay and DAG processor. Run as many replicas as you like."""
    settings = _settings(host=host, port=port, dags_folder=dags_folder)
    configure_logging(settings.log_level)
    _run(_api(settings))


async def _api(settings: Settings) -> None:
    from app.db.engine import create_database
    from app.main import create_app
    from weir.broker import create_broker

    database = create_database(settings.database_url)
    app = create_app(settings, database, create_broker(settings))
    server = QuietServer(app, settings.host, settings.port, settings.log_level)
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
        await database.dispose()


@cli.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues to serve.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Attempts run at once.")] = None,
    dags_folder: DagsFolder = None,
) -> None:
    """Run tasks from the broker's queues. Needs WEIR_BROKER_URL and WEIR_API_URL; never the
    database. On SIGTERM it stops taking work and lets running tasks finish."""
    settings = _settings(
        worker_queues=queues, worker_concurrency=concurrency, dags_folder=dags_folder
    )
    configure_logging(settings.log_level)
    _run(_worker(settings))


async def _worker(settings: Settings) -> None:
    from weir.broker import create_broker
    from workers.main import Worker

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
    from app.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print("The database schema is up to date.")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="What the token is for.")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer.")] = "viewer",
) -> None:
    """Create an API token in WEIR_DATABASE_URL and print it (it is shown only once)."""
    from app.auth import Role

    try:
        parsed = Role(role)
    except ValueError as error:
        console.print(f"[red]Unknown role {role!r}[/]: use admin, operator or viewer.")
        raise typer.Exit(2) from error
    _run(_tokens_create(_settings(), name, parsed))


async def _tokens_create(settings: Settings, name: str, role: Any) -> None:
    from app.auth import create_token
    from app.db.engine import create_database
    from weir.clock import SystemClock

    database = create_database(settings.database_url)
    try:
        async with database.sessions.begin() as session:
            clear = await create_token(session, name, role, SystemClock().now())
    finally:
        await database.dispose()
    console.print(clear)


def main() -> None:
    cli()
