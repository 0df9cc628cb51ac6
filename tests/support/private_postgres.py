"""A PostgreSQL server of the test run's own, for faults that stop or restart the server.

The shared PostgreSQL on 5432 serves every other engineer's tests, so the chaos suite never
touches it: ``PrivatePostgres`` runs ``initdb`` into a temporary directory and ``pg_ctl`` on a
free port with its own unix socket directory (trust auth, ``fsync=off``: durability across an
OS crash is not what these tests measure; a server restart keeps every committed row anyway).
As root, the server runs as the ``postgres`` OS user, since ``initdb`` refuses root.

Each test gets a fresh database cloned from a template migrated once per server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import asyncpg

from app.db.migrate import upgrade_async
from tests.support.stack import free_port

__all__ = ["PrivatePostgres", "find_postgres_bin"]

_TEMPLATE = "weir_chaos_template"


def find_postgres_bin() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: ``WEIR_TEST_PG_BIN``, else the newest
    ``/usr/lib/postgresql/*/bin``, else wherever ``PATH`` has ``initdb``."""
    configured = os.environ.get("WEIR_TEST_PG_BIN")
    if configured:
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise FileNotFoundError(
            "initdb not found: install PostgreSQL's server package (postgresql-15) or point "
            "WEIR_TEST_PG_BIN at the directory holding initdb and pg_ctl."
        )
    return Path(found).parent


class PrivatePostgres:
    """One server: ``start``, ``stop``, ``restart`` and ``remove``; databases on it for tests."""

    def __init__(self, root: Path, port: int, bindir: Path, user: str | None) -> None:
        self.root, self.port, self.bindir, self.user = root, port, bindir, user
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "server.log"
        self.restarts = 0
        self._template_ready = False

    @classmethod
    def create(cls) -> PrivatePostgres:
        """``initdb`` a new cluster in a fresh temporary directory (owned by ``postgres`` when
        running as root); the server is not started yet."""
        user = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="weir-chaos-pg-"))
        server = cls(root, free_port(), find_postgres_bin(), user)
        server.sockets.mkdir()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (root, server.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return server

    @property
    def admin_dsn(self) -> str:
        """libpq form, for asyncpg."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy form, for Weir's ``WEIR_DATABASE_URL``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        pg_ctl = ["-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options]
        self._run("pg_ctl", *pg_ctl, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (what a planned restart does); ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()
        self.restarts += 1

    def remove(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    async def create_database(self) -> str:
        """A new database with Weir's current schema; returns its SQLAlchemy URL."""
        name = f"weir_chaos_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            if not self._template_ready:
                await admin.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"')
                await admin.execute(f'CREATE DATABASE "{_TEMPLATE}"')
                await upgrade_async(self.url(_TEMPLATE))
                self._template_ready = True
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"')
        finally:
            await admin.close()
        return self.url(name)

    async def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def terminate_backends(self, url: str) -> int:
        """``pg_terminate_backend`` every session on the database of ``url`` (Weir's): how many."""
        name = url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await admin.close()
        return int(killed or 0)

    async def is_ready(self) -> bool:
        try:
            connection = await asyncpg.connect(self.admin_dsn, timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
                f"\n(server log: {self.log})"
            )
