"""Which SQL a page ran, and how long each statement took, read from PostgreSQL's own log.

``pg_stat_statements`` needs a server restart to load, and the bench must not restart anybody's
server; ``log_min_duration_statement`` needs nothing: set on the bench database alone
(``ALTER DATABASE … SET``), it makes every statement of that database's *new* sessions log its
duration. The bench then serves the database with a fresh ``weir api``, requests one page at a
time and reads the lines the log grew by, through ``pg_read_file`` (a superuser's right), so it
works wherever the server writes its log to a file it can name: ``pg_current_logfile()`` under
the logging collector, else Debian's ``/var/log/postgresql/postgresql-<major>-<cluster>.log``.
Lines of other databases are told apart by the database name in ``log_line_prefix`` (``%d``,
in Debian's default); without it, a busy server's other statements would be counted in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import asyncpg

__all__ = ["PageSql", "ServerLog", "Statement", "log_every_statement", "parse_log"]

_ENTRY = re.compile(
    r"^(?P<prefix>.*?)LOG:\s+duration: (?P<ms>\d+(?:\.\d+)?) ms\s+"
    r"(?P<kind>statement|parse|bind|execute)(?P<name>[^:]*): (?P<sql>.*)$",
    re.DOTALL,
)
_PID = re.compile(r"\[(\d+)\]")
_TRANSACTION = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
_MAX_READ = 64 * 1024 * 1024


@dataclass(frozen=True)
class Statement:
    ms: float
    sql: str


@dataclass
class PageSql:
    """The statements one request ran (transaction control left out), slowest first."""

    statements: list[Statement] = field(default_factory=list)

    @property
    def queries(self) -> int:
        return len(self.statements)

    @property
    def total_ms(self) -> float:
        return sum(s.ms for s in self.statements)

    def slowest(self, count: int = 3) -> list[Statement]:
        return sorted(self.statements, key=lambda s: s.ms, reverse=True)[:count]


def _entries(text: str) -> list[str]:
    """Log entries, each with its continuation lines (a multi-line statement's tab-led lines)."""
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith(("\t", " ")) and entries:
            entries[-1] += "\n" + line.strip()
        else:
            entries.append(line)
    return entries


def parse_log(text: str, database: str) -> PageSql:
    """The executed statements of ``database`` in a slice of the server log.

    A prepared statement logs its parse, bind and execute phases separately: the execute line is
    the query (its duration the execution's); the other phases are added to its time."""
    found = PageSql()
    pending_ms: dict[str, float] = {}  # per backend process: sessions' lines interleave
    for entry in _entries(text):
        match = _ENTRY.match(entry)
        if match is None or database not in match["prefix"]:
            continue
        pid = _PID.search(match["prefix"])
        backend = pid.group(1) if pid else ""
        ms, kind, sql = float(match["ms"]), match["kind"], match["sql"]
        if kind in ("parse", "bind"):
            pending_ms[backend] = pending_ms.get(backend, 0.0) + ms
            continue
        ms += pending_ms.pop(backend, 0.0)
        if not _TRANSACTION.match(sql):
            found.statements.append(Statement(ms, sql))
    return found


@dataclass(frozen=True)
class ServerLog:
    """The server's log file, read through SQL from a superuser connection."""

    dsn: str
    path: str

    @classmethod
    async def locate(cls, dsn: str) -> ServerLog | None:
        """The log file the server writes, if a superuser can read it; None otherwise."""
        connection = await asyncpg.connect(dsn)
        try:
            if not await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = "
                                             "current_user"):  # fmt: skip
                return None
            candidates = [await connection.fetchval("SELECT pg_current_logfile('stderr')")]
            data_directory = PurePosixPath(await connection.fetchval("SHOW data_directory"))
            major = (await connection.fetchval("SHOW server_version")).split(".")[0]
            candidates.append(f"/var/log/postgresql/postgresql-{major}-{data_directory.name}.log")
            for path in filter(None, candidates):
                if await connection.fetchval(
                    "SELECT (pg_stat_file($1, true)).size IS NOT NULL", path
                ):
                    return cls(dsn, path)
        finally:
            await connection.close()
        return None

    async def size(self) -> int:
        connection = await asyncpg.connect(self.dsn)
        try:
            size: int = await connection.fetchval("SELECT (pg_stat_file($1)).size", self.path)
        finally:
            await connection.close()
        return size

    async def read_from(self, offset: int) -> str:
        connection = await asyncpg.connect(self.dsn)
        try:
            data: bytes = await connection.fetchval(
                "SELECT pg_read_binary_file($1, $2, $3)", self.path, offset, _MAX_READ
            )
        finally:
            await connection.close()
        return data.decode(errors="replace")


async def log_every_statement(dsn: str, database: str) -> None:
    """Make every statement of ``database``'s new sessions log its duration."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'ALTER DATABASE "{database}" SET log_min_duration_statement = 0')
    finally:
        await connection.close()
