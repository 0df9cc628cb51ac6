"""Key rotation against real, migrated databases (SQLite and PostgreSQL): after ``rotate_all`` with
keys "B,A", every stored secret opens with B alone and still holds its clear value; rows without a
secret are left alone; batches walk the whole table; a value no key opens stops the rotation with
an error naming the table, the row and the column; a write during a rotation is not lost."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from app.db.engine import Database, create_database
from app.db.models import Connection, Dag, DagVersion, Variable, Webhook
from app.secret_rotation import RotationReport, UndecryptableSecret, rotate_all
from app.secrets import SecretBox
from weir.errors import ConfigError

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()
OLD, BOTH, NEW = SecretBox([KEY_A]), SecretBox([KEY_B, KEY_A]), SecretBox([KEY_B])
VARIABLES = {f"var_{n:02}": f"value {n}" for n in range(7)}


async def seed(database: Database, box: SecretBox) -> None:
    """Every kind of stored secret, encrypted with ``box``, plus rows that hold none."""
    async with database.sessions.begin() as session:
        version = DagVersion(dag_id="etl", hash="h", file_hash="f", serialized={"tasks": []},
                             created_at=NOW)  # fmt: skip
        session.add(version)
        await session.flush()
        session.add(Dag(dag_id="etl", fileloc="etl.py", version_id=version.id, last_parsed_at=NOW))
        session.add_all([
            Connection(conn_id="warehouse", conn_type="postgres",
                       password_encrypted=box.encrypt("pa55"),
                       extra_encrypted=box.encrypt(json.dumps({"api_key": "xk"}))),
            Connection(conn_id="public_http", conn_type="http"),
            *(Variable(key=key, value_encrypted=box.encrypt(value))
              for key, value in VARIABLES.items()),
            _webhook("etl.github", box.encrypt("hook-secret")),
            _webhook("etl.declared", b""),  # declared in a DAG file, no secret set yet
        ])  # fmt: skip


def _webhook(hook_id: str, secret: bytes) -> Webhook:
    return Webhook(hook_id=hook_id, dag_id="etl", name=hook_id.split(".")[1], origin="api",
                   signature="github", secret_encrypted=secret, conf_fields=None, filters=[],
                   created_at=NOW, updated_at=NOW)  # fmt: skip


def counts(report: RotationReport) -> dict[str, tuple[int, int]]:
    return {done.table: (done.rows, done.values) for done in report.tables}


async def test_every_secret_opens_with_the_new_key_alone(database: Database) -> None:
    await seed(database, OLD)
    seen: list[tuple[str, int, int]] = []
    report = await rotate_all(
        database,
        BOTH,
        batch_size=3,
        on_progress=lambda d, total: seen.append((d.table, d.rows, total)),
    )
    assert counts(report) == {"connection": (2, 2), "variable": (7, 7), "webhook": (2, 1)}
    assert report.values == 10
    assert [s for s in seen if s[0] == "variable"] == [
        ("variable", 0, 7), ("variable", 3, 7), ("variable", 6, 7), ("variable", 7, 7)
    ]  # fmt: skip

    async with database.sessions() as session:
        connections = {c.conn_id: c for c in await session.scalars(select(Connection))}
        variables = {v.key: v.value_encrypted for v in await session.scalars(select(Variable))}
        hooks = {h.hook_id: h.secret_encrypted for h in await session.scalars(select(Webhook))}
    warehouse, public = connections["warehouse"], connections["public_http"]
    assert warehouse.password_encrypted and warehouse.extra_encrypted
    assert NEW.decrypt(warehouse.password_encrypted) == "pa55"
    assert json.loads(NEW.decrypt(warehouse.extra_encrypted)) == {"api_key": "xk"}
    assert (public.password_encrypted, public.extra_encrypted) == (None, None)
    assert {key: NEW.decrypt(token) for key, token in variables.items()} == VARIABLES
    assert NEW.decrypt(hooks["etl.github"]) == "hook-secret"
    assert hooks["etl.declared"] == b""


async def test_rotating_twice_changes_nothing_that_matters(database: Database) -> None:
    await seed(database, OLD)
    await rotate_all(database, BOTH)
    again = await rotate_all(database, NEW)  # the old key is gone: every value must still open
    assert counts(again)["variable"] == (7, 7)


async def test_a_value_no_key_opens_names_its_row_and_the_fix(database: Database) -> None:
    await seed(database, OLD)
    lost = SecretBox([Fernet.generate_key().decode()])
    async with database.sessions.begin() as session:
        session.add(Variable(key="var_03b", value_encrypted=lost.encrypt("orphan")))

    with pytest.raises(UndecryptableSecret) as raised:
        await rotate_all(database, BOTH, batch_size=3)
    assert (raised.value.table, raised.value.key, raised.value.column) == (
        "variable", "var_03b", "value_encrypted"
    )  # fmt: skip
    message = str(raised.value)
    assert "variable 'var_03b'" in message and "WEIR_FERNET_KEYS" in message
    assert "Put the key it was encrypted with back" in message

    async with database.sessions() as session:
        rows = await session.execute(select(Variable.key, Variable.value_encrypted))
        tokens = {key: token for key, token in rows}
    # Batches before the bad row were committed, its own batch rolled back, later ones not begun.
    assert NEW.decrypt(tokens["var_02"]) == "value 2"
    for untouched in ("var_03", "var_04", "var_05"):
        with pytest.raises(ConfigError, match="cannot be decrypted"):
            NEW.decrypt(tokens[untouched])


class InterruptingBox(SecretBox):
    """The real keys; while the rotation holds ``var_03`` (read, not yet written back), another
    connection, from another thread, sets a new value for it, as an API replica would."""

    def __init__(self, url: str) -> None:
        super().__init__([KEY_B, KEY_A])
        self.url = url
        self.writer: threading.Thread | None = None

    def rotate(self, token: bytes) -> bytes:
        if self.writer is None and self.decrypt(token) == VARIABLES["var_03"]:
            self.writer = threading.Thread(target=asyncio.run, args=(self._write(),))
            self.writer.start()
            # Long enough for the write to land if nothing holds it back; with the row locked,
            # it waits for the batch to commit instead.
            self.writer.join(timeout=1)
        return super().rotate(token)

    async def _write(self) -> None:
        database = create_database(self.url)
        try:
            async with database.sessions.begin() as session:
                await session.execute(
                    update(Variable).where(Variable.key == "var_03")
                    .values(value_encrypted=NEW.encrypt("written meanwhile"))
                )  # fmt: skip
        finally:
            await database.dispose()


async def test_a_write_during_a_rotation_is_kept(database: Database) -> None:
    await seed(database, OLD)
    box = InterruptingBox(database.engine.url.render_as_string(hide_password=False))
    await rotate_all(database, box, batch_size=2)
    assert box.writer is not None
    await asyncio.to_thread(box.writer.join)
    async with database.sessions() as session:
        token = await session.scalar(
            select(Variable.value_encrypted).where(Variable.key == "var_03")
        )
    assert token is not None and NEW.decrypt(token) == "written meanwhile"
