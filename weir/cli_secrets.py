"""``weir secrets``: maintenance of the secrets Weir stores encrypted (invariant 6).

Unlike the commands that go through the REST API, ``weir secrets rotate`` works directly on
``WEIR_DATABASE_URL`` with the keys of ``WEIR_FERNET_KEYS``, like ``weir db upgrade``: it is run by
whoever holds the keys, from a machine configured like the API replicas.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from weir.config import Settings
from weir.errors import ConfigError
from weir.remote import console, errors

if TYPE_CHECKING:
    from app.secret_rotation import OnProgress, RotationReport, TableRotation
    from app.secrets import SecretBox

__all__ = ["secrets_app"]

secrets_app = typer.Typer(
    help="Maintain the secrets Weir stores encrypted (connections, variables, webhook secrets).",
    no_args_is_help=True,
)


@secrets_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret (connection passwords and extras, variable values, webhook
    secrets) with the newest key of WEIR_FERNET_KEYS, working directly on WEIR_DATABASE_URL.

    To rotate the encryption key:

    1. Generate a key: python -c 'from cryptography.fernet import Fernet;
    print(Fernet.generate_key().decode())'.

    2. Put it first in WEIR_FERNET_KEYS on every replica, keeping the old key after it
    (WEIR_FERNET_KEYS=new,old), and restart them: new values use the new key, old ones still open.

    3. Run `weir secrets rotate` once, with the same WEIR_FERNET_KEYS and WEIR_DATABASE_URL.

    4. Drop the old key from WEIR_FERNET_KEYS everywhere and restart again.

    Safe to run again, and while Weir is running.
    """
    from weir.cli import load_settings, run_command

    run_command(_rotate(load_settings()))


async def _rotate(settings: Settings) -> None:
    from app.db.engine import create_database
    from app.secret_rotation import rotate_all
    from weir.cli import check_database

    box = _secret_box(settings)
    database = create_database(settings.database_url, pool_size=1)
    try:
        await check_database(settings, database)
        with _progress_bars() as show_progress:
            report = await rotate_all(database, box, on_progress=show_progress)
    finally:
        await database.dispose()
    console.print(_summary(report))
    console.print(
        f"Every stored secret ({report.values}) is now encrypted with the newest key; the older "
        "keys of WEIR_FERNET_KEYS can be dropped."
    )


def _secret_box(settings: Settings) -> SecretBox:
    """The API's keys; a warning when there is no older key, since then nothing moves."""
    from app.secrets import SecretBox

    if not settings.fernet_keys and settings.secret_key is None:
        raise ConfigError(
            "Neither WEIR_FERNET_KEYS nor WEIR_SECRET_KEY is set: run `weir secrets rotate` with "
            "the same settings as your `weir api` replicas, the new key first in WEIR_FERNET_KEYS."
        )
    if len(settings.fernet_keys) < 2:
        errors.print(
            "[yellow]warning:[/] WEIR_FERNET_KEYS holds fewer than two keys, so there is no older "
            "key to rotate away from; this only checks that every secret decrypts. To rotate, "
            "put a new key first: WEIR_FERNET_KEYS=new,old."
        )
    return SecretBox.from_settings(settings)


@contextmanager
def _progress_bars() -> Iterator[OnProgress]:
    """One bar per table, on standard error (standard output keeps the summary)."""
    bars: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn())
    live = errors.is_terminal  # a log or a pipe gets the summary alone
    with Progress(*columns, console=errors, transient=True, disable=not live) as progress:

        def show(done: TableRotation, total: int) -> None:
            if done.table not in bars:
                bars[done.table] = progress.add_task(done.table, total=total)
            progress.update(bars[done.table], completed=done.rows, total=total)

        yield show


def _summary(report: RotationReport) -> Table:
    table = Table("table", title="Secrets rotated")
    table.add_column("rows", justify="right")
    table.add_column("secrets re-encrypted", justify="right")
    for done in report.tables:
        table.add_row(done.table, str(done.rows), str(done.values))
    return table
