"""A database outage: 503 problem+json with Retry-After (readiness too), one warning and one
recovery line in the log instead of a traceback per request or loop pass, and every loop resumes
by itself, losing nothing.

The outage is real but private: the stack talks to the shared PostgreSQL through a TCP proxy of
its own (``tests/support/tcp_proxy.py``) that the test cuts and restores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError

from app.api.problems import install_problem_handlers
from app.db.engine import Database, create_database
from app.db.outage import DatabaseUnavailable
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.services import rabbitmq_url, require_rabbitmq
from tests.support.stack import Stack, free_port, run_stack, stack_settings, wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

PROBLEM_JSON = "application/problem+json"
OUTAGE_SECONDS = 3.0

GATED = """
    import time
    from pathlib import Path
    from weir import dag, task

    GATE = Path(__file__).parent.parent / "gate"

    @dag
    def through_outage():
        @task
        def work() -> str:
            while not GATE.exists():  # the test opens the gate while the database is away
                time.sleep(0.05)
            return "worked"

        @task
        def after(value: str) -> str:
            return value + " and after"

        after(work())

    through_outage()
"""


@pytest.fixture
async def proxied_url() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A fresh database on the shared server, reached through a proxy of this test's own."""
    url = await create_postgres_database()
    target = make_url(url)
    try:
        async with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
            through = target.set(host="127.0.0.1", port=proxy.port)
            yield through.render_as_string(hide_password=False), proxy
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def stack(proxied_url: tuple[str, TcpProxy], tmp_path: Path) -> AsyncIterator[Stack]:
    await require_rabbitmq(rabbitmq_url())
    url, _proxy = proxied_url
    settings = stack_settings("postgres", tmp_path, url, free_port(), log_level="INFO")
    async with run_stack("postgres", settings, workers=1) as running:
        yield running


async def test_an_outage_answers_503_logs_once_and_loses_nothing(
    stack: Stack,
    proxied_url: tuple[str, TcpProxy],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # uvicorn's own loggers do not propagate: its "Exception in ASGI application" would go unseen.
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(caplog.handler)
    try:
        await _run_through_an_outage(stack, proxied_url[1], tmp_path, caplog)
    finally:
        uvicorn.removeHandler(caplog.handler)
    _assert_logged_once(caplog.records)


async def _run_through_an_outage(
    stack: Stack, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run is in flight; the database goes away for a few seconds, then comes back."""
    stack.write_dag("through_outage.py", GATED)
    await stack.wait_for_dag("through_outage")
    run_id = await stack.trigger("through_outage")
    await wait_until(lambda: _task_state(stack, run_id, "work", "running"))

    async with stack.dashboard() as browser:
        caplog.clear()
        await proxy.cut()
        await _assert_unavailable(stack, browser)
        (tmp_path / "gate").touch()  # the task ends now; its report has to wait for the database
        await wait_until(lambda: _lasted(stack.database, OUTAGE_SECONDS), timeout=30)
        await _assert_unavailable(stack, browser)
        await proxy.restore()

        assert await stack.wait_for_run("through_outage", run_id) == "success"
        tis = await stack.task_instances("through_outage", run_id)
        assert {t: ti["state"] for t, ti in tis.items()} == {"work": "success", "after": "success"}
        assert (await stack.client.get("/health/ready")).status_code == 200
        assert (await browser.get("/")).status_code == 200


async def _assert_unavailable(stack: Stack, browser: httpx.AsyncClient) -> None:
    for path in ("/api/v1/dags", "/health/ready"):
        response = await stack.client.get(path)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        assert int(response.headers["retry-after"]) > 0
        assert "database is unavailable" in response.json()["detail"]
    assert (await stack.client.get("/health/live")).status_code == 200
    page = await browser.get("/")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "database is unavailable" in page.text


def _assert_logged_once(records: list[logging.LogRecord]) -> None:
    tracebacks = [f"{r.name}: {r.getMessage()}" for r in records if r.exc_info or r.exc_text]
    assert not tracebacks, tracebacks
    errors = [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR]
    assert not errors, errors
    outage = [r for r in records if r.name == "app.db.outage"]
    assert [r.levelno for r in outage] == [logging.WARNING, logging.INFO], [
        r.getMessage() for r in outage
    ]
    assert "Database unavailable" in outage[0].getMessage()
    assert "available again after" in outage[1].getMessage()


async def _task_state(stack: Stack, run_id: str, task_id: str, state: str) -> bool:
    tis = await stack.task_instances("through_outage", run_id)
    return bool(tis[task_id]["state"] == state)


async def _lasted(database: Database, seconds: float) -> bool:
    return database.outage.seconds >= seconds


async def test_refused_values_and_duplicates_stay_what_they_were_not_outages(
    proxied_url: tuple[str, TcpProxy],
) -> None:
    """Only connection-level failures are outages. A ``DataError`` still answers 422; a value
    PostgreSQL refuses (asyncpg reports it as a plain ``DBAPIError``) still fails as before; a
    unique violation is still an ``IntegrityError`` for its caller (which makes it a 409); none
    starts an outage. The same statement on a cut connection answers 503."""
    url, proxy = proxied_url
    database = create_database(url, pool_size=1)
    transport = httpx.ASGITransport(app=_app_running(database), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://weir") as client:
            data_error = await client.get("/api/data-error")
            assert data_error.status_code == 422, data_error.text
            assert data_error.headers["content-type"] == PROBLEM_JSON
            assert (await client.get("/api/refused-value")).status_code == 500
            with pytest.raises(IntegrityError):
                await _insert_twice(database)
            assert not database.outage.is_down
            await proxy.cut()
            cut = await client.get("/api/refused-value")
            assert cut.status_code == 503, cut.text
            assert cut.headers["content-type"] == PROBLEM_JSON
            assert database.outage.is_down
            with pytest.raises(DatabaseUnavailable):
                await _insert_twice(database)
    finally:
        await proxy.restore()
        await database.dispose()


def _app_running(database: Database) -> FastAPI:
    """Weir's problem handlers over two routes: one sends PostgreSQL a value it refuses, the
    other raises a ``DataError`` as SQLAlchemy does for drivers that classify SQLSTATE 22."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/api/refused-value")
    async def refused_value() -> Any:
        async with database.sessions() as session:
            return await session.scalar(text("SELECT CAST('not a number' AS integer)"))

    @app.get("/api/data-error")
    async def data_error() -> Any:
        raise DataError("INSERT …", {}, Exception("value too long for type character varying(5)"))

    return app


async def _insert_twice(database: Database) -> None:
    async with database.sessions.begin() as session:
        await session.execute(text("CREATE TEMPORARY TABLE twice (id integer PRIMARY KEY)"))
        await session.execute(text("INSERT INTO twice VALUES (1), (1)"))


async def test_an_outage_longer_than_a_lease_does_not_run_a_running_attempt_again(
    proxied_url: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    """Workers cannot renew leases while the database is away: the leases are judged only a
    whole lease after it came back, so the live worker keeps its attempt (attempt 1 finishes)."""
    await require_rabbitmq(rabbitmq_url())
    url, proxy = proxied_url
    leases = {"lease_seconds": 2.0, "heartbeat_interval": 0.5, "sweep_interval": 0.5}
    settings = stack_settings("postgres", tmp_path, url, free_port(), **leases)
    async with run_stack("postgres", settings, workers=1) as stack:
        stack.write_dag("through_outage.py", GATED)
        await stack.wait_for_dag("through_outage")
        run_id = await stack.trigger("through_outage")
        await wait_until(lambda: _task_state(stack, run_id, "work", "running"))

        await proxy.cut()
        await wait_until(lambda: _lasted(stack.database, 2 * settings.lease_seconds), timeout=30)
        await proxy.restore()
        (tmp_path / "gate").touch()

        assert await stack.wait_for_run("through_outage", run_id) == "success"
        work = (await stack.task_instances("through_outage", run_id))["work"]
        assert work["attempt"] == 1, work


async def test_leases_are_judged_only_a_whole_lease_after_an_outage(
    proxied_url: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    """A lease that lapsed while the database was away is not requeued until a whole lease after
    it came back: its worker may be alive and only waiting to renew it."""
    await require_rabbitmq(rabbitmq_url())
    url, proxy = proxied_url
    leases = {"lease_seconds": 3.0, "heartbeat_interval": 0.5, "sweep_interval": 0.2}
    settings = stack_settings("postgres", tmp_path, url, free_port(), **leases)
    async with run_stack("postgres", settings, workers=0) as stack:
        stack.write_dag("through_outage.py", GATED)
        await stack.wait_for_dag("through_outage")
        run_id = await stack.trigger("through_outage")
        await wait_until(lambda: _task_state(stack, run_id, "work", "queued"))
        async with stack.database.sessions.begin() as session:  # claimed by a worker we pause
            await session.execute(
                text(
                    "UPDATE task_instance SET state = 'running', worker = 'paused:1', "
                    "lease_expires_at = now() + interval '1 second' WHERE task_id = 'work'"
                )
            )

        await proxy.cut()
        await wait_until(lambda: _lasted(stack.database, 2.0), timeout=30)
        await proxy.restore()
        await wait_until(lambda: _is_up(stack.database), timeout=30)
        back = time.monotonic()

        await wait_until(lambda: _task_state(stack, run_id, "work", "queued"), timeout=30)
        assert time.monotonic() - back >= settings.lease_seconds - 0.5


async def _is_up(database: Database) -> bool:
    try:
        async with database.sessions() as session:
            await session.execute(text("SELECT 1"))
    except DatabaseUnavailable:
        return False
    return not database.outage.is_down
