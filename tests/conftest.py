"""Shared fixtures: ``stack`` runs a whole Weir on each backend (see tests/support/stack.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.db.engine import Database, create_database
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_database_url,
)
from tests.support.stack import BACKENDS, Stack, start_stack

CHAOS = Path(__file__).resolve().parent / "chaos"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a chaos test run by an xdist worker before it starts anything: chaos tests kill
    processes and time recoveries, which a parallel suite sharing the machine would skew."""
    is_chaos = item.get_closest_marker("chaos") is not None or CHAOS in item.path.parents
    if is_chaos and hasattr(item.config, "workerinput"):
        pytest.fail(
            "Chaos tests run serially: `make chaos`, or `pytest tests/chaos` without -n "
            "(and `pytest -n N --ignore=tests/chaos` for the rest).",
            pytrace=False,
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        request.applymarker(pytest.mark.postgres)
    return name


@pytest.fixture
async def stack(backend: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(backend, tmp_path) as running:
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database on each backend, dropped afterwards."""
    if request.param == "sqlite":
        url = await sqlite_database_url(tmp_path)
    else:
        url = await create_postgres_database()
    opened = create_database(url)
    try:
        yield opened
    finally:
        await opened.dispose()
        if request.param == "postgres":
            await drop_postgres_database(url)
