"""Re-encrypting every stored secret with the newest Fernet key (``weir secrets rotate``).

After a new key is put first in ``WEIR_FERNET_KEYS``, old values still open with the older keys;
this walks every table that holds encrypted values and rewrites them under the newest key, so the
older keys can then be dropped. Each table is walked in primary-key order, ``BATCH_SIZE`` rows per
transaction: no long transaction, and a rerun after a failure is harmless (re-encrypting a value
that is already under the newest key changes nothing that matters). Rows are read ``FOR UPDATE``
and written back by primary key in the same transaction, so an API write to the same row waits for
the batch instead of being overwritten by the rotation of the value it replaced (SQLite takes its
write lock at ``BEGIN``, which serialises the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.db.engine import Database
from app.db.models import Base, Connection, Variable, Webhook
from app.secrets import SecretBox
from weir.errors import ConfigError

__all__ = [
    "BATCH_SIZE",
    "SECRET_TABLES",
    "OnProgress",
    "RotationReport",
    "SecretTable",
    "TableRotation",
    "UndecryptableSecret",
    "rotate_all",
]

BATCH_SIZE = 500


@dataclass(frozen=True)
class SecretTable:
    """Where one table keeps encrypted values: its primary key and its encrypted columns."""

    name: str
    model: type[Base]
    key: InstrumentedAttribute[str]
    columns: tuple[InstrumentedAttribute[Any], ...]


SECRET_TABLES = (
    SecretTable(
        "connection",
        Connection,
        Connection.conn_id,
        (Connection.password_encrypted, Connection.extra_encrypted),
    ),
    SecretTable("variable", Variable, Variable.key, (Variable.value_encrypted,)),
    SecretTable("webhook", Webhook, Webhook.hook_id, (Webhook.secret_encrypted,)),
)


@dataclass
class TableRotation:
    """Progress in one table: rows read, and encrypted values rewritten (NULL/empty skipped)."""

    table: str
    rows: int = 0
    values: int = 0


@dataclass
class RotationReport:
    tables: list[TableRotation] = field(default_factory=list)

    @property
    def values(self) -> int:
        return sum(table.values for table in self.tables)


class UndecryptableSecret(ConfigError):
    """A stored value that none of the configured keys opens (its key was dropped too early)."""

    def __init__(self, table: str, key: str, column: str) -> None:
        self.table, self.key, self.column = table, key, column
        super().__init__(
            f"{table} {key!r}: {column} cannot be decrypted with any key of WEIR_FERNET_KEYS (or "
            "the key derived from WEIR_SECRET_KEY when that list is empty). Put the key it was "
            "encrypted with back in WEIR_FERNET_KEYS, after the newest one, and run `weir secrets "
            "rotate` again: the rows done so far stay rotated, this batch was rolled back."
        )


OnProgress = Callable[[TableRotation, int], None]
"""Called with a table's progress and its row count at the start and after each batch."""


async def rotate_all(
    database: Database,
    box: SecretBox,
    *,
    batch_size: int = BATCH_SIZE,
    on_progress: OnProgress | None = None,
) -> RotationReport:
    """Re-encrypt every connection password and extra, variable value and webhook secret with the
    newest key of ``box``; raise ``UndecryptableSecret`` at the first value no key opens."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    report = RotationReport()
    for table in SECRET_TABLES:
        report.tables.append(await _rotate_table(database, box, table, batch_size, on_progress))
    return report


async def _rotate_table(
    database: Database,
    box: SecretBox,
    table: SecretTable,
    batch_size: int,
    on_progress: OnProgress | None,
) -> TableRotation:
    done = TableRotation(table.name)
    async with database.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(table.model)) or 0
    report = on_progress or _ignore_progress
    report(done, total)
    after: str | None = None
    while True:
        async with database.sessions.begin() as session:
            rows = await _read_batch(session, table, after, batch_size)
            values = sum([await _rotate_row(session, box, table, row) for row in rows])
        done.rows, done.values = done.rows + len(rows), done.values + values
        report(done, max(total, done.rows))
        if len(rows) < batch_size:
            return done
        after = rows[-1][0]


def _ignore_progress(_done: TableRotation, _total: int) -> None:
    pass


async def _read_batch(
    session: AsyncSession, table: SecretTable, after: str | None, batch_size: int
) -> Sequence[Row[Any]]:
    query = select(table.key, *table.columns).order_by(table.key).limit(batch_size)
    if after is not None:
        query = query.where(table.key > after)
    return (await session.execute(query.with_for_update())).all()


async def _rotate_row(
    session: AsyncSession, box: SecretBox, table: SecretTable, row: Row[Any]
) -> int:
    """Rewrite the row's encrypted values under the newest key; how many it had."""
    key: str = row[0]
    tokens: tuple[bytes | None, ...] = tuple(row[1:])
    rotated: dict[str, bytes] = {}
    for column, token in zip(table.columns, tokens, strict=True):
        if not token:  # NULL, or b"": a webhook declared in a DAG file that has no secret yet
            continue
        try:
            rotated[column.key] = box.rotate(token)
        except InvalidToken as error:
            raise UndecryptableSecret(table.name, key, column.key) from error
    if rotated:
        statement = update(table.model).where(table.key == key).values(rotated)
        await session.execute(statement.execution_options(synchronize_session=False))
    return len(rotated)
