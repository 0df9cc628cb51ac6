"""The ``weir`` command line as its users meet it, in real subprocesses: every command explains
itself, every mistake gets one clear line that says how to fix it (a non-zero exit, never a
traceback), and ``db upgrade`` then ``tokens create`` prepare a fresh database on both backends."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from app.db.engine import create_database
from app.db.migrate import head_revision
from app.db.models import ApiToken, User
from tests.support.databases import drop_postgres_database
from tests.support.processes import cli_env, is_serving, run_cli, spawn
from tests.support.services import postgres_dsn, require_postgres
from tests.support.stack import free_port, wait_until

COMMANDS = [
    "standalone", "api", "worker", "db", "dags", "runs", "tasks", "connections", "variables",
    "users", "tokens", "secrets",
]  # fmt: skip
HELP_PAGES = {
    "standalone": ["--host", "--port", "--dags-folder", "--data-dir", "admin token"],
    "api": ["--host", "--port", "--dags-folder", "replicas"],
    "worker": ["--queues", "--concurrency", "--dags-folder", "WEIR_BROKER_URL"],
    "db upgrade": ["WEIR_DATABASE_URL"],
    "dags list": ["--url", "--token", "WEIR_API_URL"],
    "dags trigger": ["dag_id", "--conf", "--run-id", "--url", "--token"],
    "dags pause": ["dag_id", "--url", "--token"],
    "dags unpause": ["dag_id", "--url", "--token"],
    "runs show": ["dag_id", "run_id", "--url", "--token"],
    "tokens create": ["--name", "--user", "--expires-in-days", "--url", "--token"],
    "users create": ["username", "--role", "admin, operator or viewer", "--password-stdin"],
}
SECRET_KEY = "k" * 43
# Nothing listens here; the commands that get this far must fail before they would connect.
UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1/"


@dataclass
class Result:
    code: int
    output: str

    @property
    def text(self) -> str:
        """The output with whitespace collapsed, so a phrase that rich wrapped still matches."""
        return " ".join(self.output.split())

    def assert_refused(self, *phrases: str) -> None:
        assert self.code != 0, self.output
        assert "Traceback" not in self.output, self.output
        for phrase in phrases:
            assert phrase in self.text, self.output


async def weir(*args: str, cwd: Path, timeout: float = 60, **settings: object) -> Result:
    """Run ``python -m weir ARGS`` with exactly these ``WEIR_*`` settings, in ``cwd``."""
    code, output = await run_cli(*args, env=cli_env(**settings), cwd=cwd, timeout=timeout)
    return Result(code, output)


async def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = await weir("--help", cwd=tmp_path)
    assert result.code == 0, result.output
    listed = [c for c in COMMANDS if re.search(rf"(?m)^\W*{c}\s{{2,}}\S", result.output)]
    assert listed == COMMANDS, result.output
    assert "weir standalone" in result.text


@pytest.mark.parametrize(
    ("command", "mentions"),
    [(command.split(), mentions) for command, mentions in HELP_PAGES.items()],
    ids=list(HELP_PAGES),
)
async def test_each_command_explains_itself(
    command: list[str], mentions: list[str], tmp_path: Path
) -> None:
    result = await weir(*command, "--help", cwd=tmp_path)
    assert result.code == 0, result.output
    assert f"Usage: python -m weir {' '.join(command)}" in result.text
    for mention in mentions:
        assert mention in result.text, (mention, result.output)


async def test_trigger_refuses_conf_that_is_not_json(tmp_path: Path) -> None:
    result = await weir("dags", "trigger", "etl", "--conf", "{rows: 3}", cwd=tmp_path)
    result.assert_refused("--conf is not valid JSON", """Example: --conf '{"n": 3}'""")


async def test_an_unreachable_api_is_named_with_the_fix(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await weir("dags", "list", "--url", url, "--token", "weir_x", cwd=tmp_path)
    result.assert_refused(f"Cannot reach Weir at {url}", "--url", "WEIR_API_URL")


async def test_api_without_a_secret_key_says_how_to_make_one(tmp_path: Path) -> None:
    result = await weir("api", cwd=tmp_path, broker_url=UNREACHABLE_BROKER)
    result.assert_refused(
        "WEIR_SECRET_KEY is not set", "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )


@pytest.mark.parametrize("command", ["worker", "api"])
async def test_a_separate_process_refuses_the_in_process_queue(
    command: str, tmp_path: Path
) -> None:
    result = await weir(command, cwd=tmp_path, broker_url="memory://", secret_key=SECRET_KEY)
    result.assert_refused("memory://", "only works inside `weir standalone`", "amqp://")


async def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    result = await weir("users", "create", "x", "--role", "superuser", cwd=tmp_path)
    result.assert_refused("Unknown role 'superuser'", "admin, operator or viewer")


async def test_a_database_without_the_schema_asks_for_db_upgrade(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = await weir(
        "api",
        cwd=tmp_path,
        database_url=database_url,
        broker_url=UNREACHABLE_BROKER,
        secret_key=SECRET_KEY,
    )
    result.assert_refused("schema is at revision none", "run `weir db upgrade`")


async def test_db_upgrade_names_an_unreachable_database_without_its_password(
    tmp_path: Path,
) -> None:
    port = free_port()
    database_url = f"postgresql+asyncpg://weir:hunter2@127.0.0.1:{port}/weir"
    result = await weir("db", "upgrade", cwd=tmp_path, database_url=database_url)
    result.assert_refused(
        f"Cannot use the database at postgresql+asyncpg://weir:***@127.0.0.1:{port}/weir",
        "Check WEIR_DATABASE_URL",
    )
    assert "hunter2" not in result.output


async def _create_empty_postgres_database() -> str:
    base = postgres_dsn()
    await require_postgres(base)
    name = f"weir_cli_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a database that exists but has no tables yet."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'weir.db'}"
        return
    url = await _create_empty_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


async def test_db_upgrade_then_tokens_create(empty_database: str, tmp_path: Path) -> None:
    for _ in range(2):  # the second upgrade finds nothing to do, and says so just the same
        upgraded = await weir("db", "upgrade", cwd=tmp_path, database_url=empty_database)
        assert upgraded.code == 0, upgraded.output
        assert "The database schema is up to date." in upgraded.text

    # Users and tokens are made through the REST API, so serve the database first.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "dags").mkdir()
    serve = ["standalone", "--port", str(port), "--data-dir", str(tmp_path / "data"),
             "--dags-folder", str(tmp_path / "dags")]  # fmt: skip
    env = cli_env(database_url=empty_database)
    with spawn("standalone", serve, env, tmp_path / "logs") as server:

        async def ready() -> bool:
            assert server.process.poll() is None, server.output()
            return await asyncio.to_thread(is_serving, url)

        await wait_until(ready, timeout=60)
        printed = re.search(r"Admin API token: (weir_\S+)", server.output())
        assert printed is not None, server.output()
        auth = ["--url", url, "--token", printed.group(1)]
        user = await weir(
            "users", "create", "ci", "--role", "operator", "--no-password", *auth, cwd=tmp_path
        )
        assert user.code == 0, user.output
        created = await weir(
            "tokens", "create", "--name", "ci", "--user", "ci", *auth, cwd=tmp_path
        )
    assert created.code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert re.fullmatch(r"weir_[A-Za-z0-9_\-]{40,}", token), created.output

    database = create_database(empty_database)
    try:
        async with database.sessions() as session:
            revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
            ci = await session.scalar(select(User).where(User.username == "ci"))
            stored = (await session.scalars(select(ApiToken).where(ApiToken.name == "ci"))).all()
    finally:
        await database.dispose()
    assert revision == head_revision()
    assert ci is not None and (ci.role, ci.password_hash) == ("operator", None)
    assert [t.user_id for t in stored] == [ci.id]
    assert stored[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr([vars(t) for t in stored])  # only the hash is kept
