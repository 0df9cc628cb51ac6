"""``weir secrets rotate`` in real subprocesses, as an operator runs it: with "B,A" it moves every
secret to key B and prints a summary per table; a value no configured key opens, or a database
without the schema, gets a non-zero exit and one line naming the fix; the help page is the
rotation procedure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from app.db.engine import create_database
from app.db.models import Connection, Variable
from app.secrets import SecretBox
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_database_url,
)
from tests.support.processes import cli_env, run_cli

KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@dataclass
class Result:
    code: int
    output: str

    @property
    def text(self) -> str:
        """The output with whitespace and table borders collapsed, so phrases and rows match."""
        return " ".join(self.output.replace("│", " ").split())

    def assert_refused(self, *phrases: str) -> None:
        assert self.code != 0, self.output
        assert "Traceback" not in self.output, self.output
        for phrase in phrases:
            assert phrase in self.text, self.output


async def weir(*args: str, cwd: Path, **settings: object) -> Result:
    """Run ``python -m weir ARGS`` with exactly these ``WEIR_*`` settings."""
    code, output = await run_cli(*args, env=cli_env(**settings), cwd=cwd, timeout=60)
    return Result(code, output)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database holding a connection and a variable encrypted with key A."""
    if request.param == "sqlite":
        url = await sqlite_database_url(tmp_path)
    else:
        url = await create_postgres_database()
    database, box = create_database(url), SecretBox([KEY_A])
    try:
        async with database.sessions.begin() as session:
            session.add(Connection(conn_id="warehouse", conn_type="postgres",
                                   password_encrypted=box.encrypt("pa55")))  # fmt: skip
            session.add(Variable(key="region", value_encrypted=box.encrypt("eu-west-1")))
        yield url
    finally:
        await database.dispose()
        if request.param == "postgres":
            await drop_postgres_database(url)


async def rotate(database_url: str, fernet_keys: str, cwd: Path) -> Result:
    return await weir("secrets", "rotate", cwd=cwd, database_url=database_url,
                      fernet_keys=fernet_keys)  # fmt: skip


async def stored_values(database_url: str, box: SecretBox) -> tuple[str, str]:
    database = create_database(database_url)
    try:
        async with database.sessions() as session:
            password = await session.scalar(select(Connection.password_encrypted))
            value = await session.scalar(select(Variable.value_encrypted))
    finally:
        await database.dispose()
    assert password is not None and value is not None
    return box.decrypt(password), box.decrypt(value)


async def test_rotate_moves_every_secret_to_the_first_key(
    database_url: str, tmp_path: Path
) -> None:
    result = await rotate(database_url, f"{KEY_B},{KEY_A}", tmp_path)
    assert result.code == 0, result.output
    assert "connection 1 1" in result.text and "variable 1 1" in result.text
    assert "webhook 0 0" in result.text
    assert "Every stored secret (2) is now encrypted with the newest key" in result.text
    assert await stored_values(database_url, SecretBox([KEY_B])) == ("pa55", "eu-west-1")

    again = await rotate(database_url, KEY_B, tmp_path)  # old key dropped: still all readable
    assert again.code == 0, again.output
    assert "fewer than two keys" in again.text


async def test_a_secret_no_key_opens_is_named_with_the_fix(
    database_url: str, tmp_path: Path
) -> None:
    result = await rotate(database_url, f"{KEY_B},{Fernet.generate_key().decode()}", tmp_path)
    result.assert_refused(
        "connection 'warehouse': password_encrypted cannot be decrypted",
        "Put the key it was encrypted with back in WEIR_FERNET_KEYS",
    )
    assert await stored_values(database_url, SecretBox([KEY_A])) == ("pa55", "eu-west-1")


async def test_a_database_without_the_schema_asks_for_db_upgrade(tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = await rotate(empty, f"{KEY_B},{KEY_A}", tmp_path)
    result.assert_refused("schema is at revision none", "run `weir db upgrade`")


async def test_without_any_key_it_says_which_settings_to_use(tmp_path: Path) -> None:
    result = await weir("secrets", "rotate", cwd=tmp_path, database_url="sqlite+aiosqlite://")
    result.assert_refused("Neither WEIR_FERNET_KEYS nor WEIR_SECRET_KEY is set")


async def test_help_is_the_rotation_procedure(tmp_path: Path) -> None:
    result = await weir("secrets", "rotate", "--help", cwd=tmp_path)
    assert result.code == 0, result.output
    for step in ("Put it first in WEIR_FERNET_KEYS on every replica", "restart",
                 "Run `weir secrets rotate` once", "Drop the old key"):  # fmt: skip
        assert step in result.text, (step, result.output)
