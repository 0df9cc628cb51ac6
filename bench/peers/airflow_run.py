"""A running Airflow for the bench: its own database on the shared PostgreSQL server, migrated,
then api-server, scheduler, dag-processor and triggerer as processes, stopped and the database
dropped afterwards, whatever happened in between.

The bench triggers runs through the REST API, as a user would, and reads the timestamps Airflow
recorded straight from its database (one query per run instead of pages of task instances).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.peers.airflow_config import AirflowLayout, airflow_environment

__all__ = ["DAG_IDS", "AirflowError", "RunningAirflow", "airflow_url", "running_airflow"]

DATABASE = "weir_bench_airflow"
DAG_IDS = ("peers_warmup", "peers_fanout", "peers_chain", "peers_trigger")
ROLES = ("api-server", "scheduler", "dag-processor", "triggerer")
_START_TIMEOUT = 240.0
_STOP_TIMEOUT = 30.0

T = TypeVar("T")


class AirflowError(RuntimeError):
    """Airflow did not start, a component died, or a run did not succeed."""


def airflow_url(server_dsn: str, database: str = DATABASE) -> str:
    """Airflow's ``sql_alchemy_conn`` for ``database`` on the server of ``server_dsn``."""
    return (
        make_url(server_dsn)
        .set(drivername="postgresql+psycopg2", database=database)
        .render_as_string(hide_password=False)
    )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class RunningAirflow:
    """Airflow's processes by role, a REST client, and a connection to its database."""

    layout: AirflowLayout
    client: httpx.AsyncClient
    db: asyncpg.Connection
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @property
    def pids(self) -> dict[str, int]:
        return {role: process.pid for role, process in self.processes.items()}

    def log(self, role: str) -> Path:
        return self.layout.home / f"{role}.out"

    def check_alive(self) -> None:
        """``AirflowError`` with the end of its output if a component has exited."""
        for role, process in self.processes.items():
            if process.returncode is not None:
                tail = self.log(role).read_text(errors="replace")[-3000:]
                raise AirflowError(f"airflow {role} exited with {process.returncode}:\n{tail}")

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.db.fetch(query, *args)


async def _admin(server_dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(_libpq(server_dsn))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(layout: AirflowLayout, env: Mapping[str, str]) -> None:
    log = layout.home / "db-migrate.out"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            str(layout.venv / "bin" / "airflow"),
            "db",
            "migrate",
            env=dict(env),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        if await process.wait() != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise AirflowError(f"airflow db migrate failed:\n{tail}")


async def _start(airflow: RunningAirflow, env: Mapping[str, str]) -> None:
    for role in ROLES:
        with airflow.log(role).open("w") as out:
            airflow.processes[role] = await asyncio.create_subprocess_exec(
                str(airflow.layout.venv / "bin" / "airflow"),
                role,
                env=dict(env),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )


async def _stop(processes: Mapping[str, asyncio.subprocess.Process]) -> None:
    """SIGTERM each component, then SIGKILL whatever is left of the process group it leads."""

    async def stop(process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # started with start_new_session: ours
        await process.wait()

    await asyncio.gather(*(stop(p) for p in processes.values()))


async def _poll(
    airflow: RunningAirflow, what: str, probe: Callable[[], Awaitable[T | None]], timeout: float
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        airflow.check_alive()
        # Refused connections and half-started answers (not yet JSON) mean: not yet.
        with contextlib.suppress(httpx.TransportError, ValueError):
            found = await probe()
            if found is not None:
                return found
        await asyncio.sleep(0.5)
    raise AirflowError(
        f"{what} within {timeout:.0f} s; see the *.out files in {airflow.layout.home}"
    )


async def _wait_ready(airflow: RunningAirflow) -> None:
    """Every component healthy, a token, and the bench's DAGs parsed, unpaused and error-free."""
    client = airflow.client

    async def healthy() -> bool | None:
        response = await client.get("/api/v2/monitor/health")
        statuses = [part.get("status") for part in response.json().values()]
        ok = response.status_code == 200 and statuses and set(statuses) == {"healthy"}
        return True if ok else None

    async def token() -> str | None:
        response = await client.get("/auth/token")
        return str(response.json()["access_token"]) if response.status_code in (200, 201) else None

    await _poll(airflow, "Airflow's components were not all healthy", healthy, _START_TIMEOUT)
    client.headers["Authorization"] = f"Bearer {await _poll(airflow, 'no token', token, 30)}"

    async def dags() -> bool | None:
        errors = (await client.get("/api/v2/importErrors")).json()
        if errors.get("total_entries"):
            raise AirflowError(f"Airflow could not import the bench's DAGs: {errors}")
        listed = (await client.get("/api/v2/dags", params={"dag_id_pattern": "peers_"})).json()
        found = {d["dag_id"] for d in listed.get("dags", []) if not d.get("is_paused")}
        return True if found >= set(DAG_IDS) else None

    await _poll(airflow, "the bench's DAGs did not appear", dags, _START_TIMEOUT)


@contextlib.asynccontextmanager
async def running_airflow(layout: AirflowLayout, server_dsn: str) -> AsyncIterator[RunningAirflow]:
    """Airflow on a fresh ``weir_bench_airflow`` database, torn down (database too) on exit."""
    shutil.rmtree(layout.home, ignore_errors=True)
    layout.home.mkdir(parents=True)
    env = airflow_environment(layout)
    name = make_url(layout.database_url).database
    await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        await _migrate(layout, env)
        db = await asyncpg.connect(_libpq(layout.database_url))
        client = httpx.AsyncClient(base_url=layout.base_url, timeout=30)
        airflow = RunningAirflow(layout, client, db)
        try:
            await _start(airflow, env)
            await _wait_ready(airflow)
            yield airflow
        finally:
            await _stop(airflow.processes)
            await client.aclose()
            await db.close()
    finally:
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
