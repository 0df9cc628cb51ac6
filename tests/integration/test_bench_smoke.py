"""The benchmarks that read a seeded history stay runnable: each one's cases, once, on a small
seed, against a real ``weir api`` (``bench.api_lists``, ``bench.dashboard_pages``). A change
that breaks a case (a renamed parameter, a page that now fails, a total that no longer matches
the seed) fails here instead of on the next person who runs the benchmark."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench import api_lists
from bench.dashboard_cases import add_resources, discover, pages, signed_in
from bench.dashboard_pages import measure_pages
from bench.seed import Seeded, SeedSizes, seed
from bench.seed_dashboard import DashboardSeeded, seed_dashboard, write_dag_files
from bench.served_api import serving_api
from tests.support.databases import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.postgres

SMALL = SeedSizes(dags=20, runs=200, big_dag_runs=100, task_instances=200, tasks_per_run=10)


@pytest.fixture
async def seeded_database() -> AsyncIterator[tuple[str, Seeded, DashboardSeeded]]:
    database_url = await create_postgres_database()
    try:
        seeded = await seed(database_url, SMALL)
        extras = await seed_dashboard(database_url, seeded, audit_entries=200)
        yield database_url, seeded, extras
    finally:
        await drop_postgres_database(database_url)


async def test_benchmark_cases_answer_on_a_small_seed(
    seeded_database: tuple[str, Seeded, DashboardSeeded], tmp_path: Path
) -> None:
    database_url, seeded, extras = seeded_database
    assert extras.live_run_id is not None
    write_dag_files(tmp_path / "dags", extras)
    password = secrets.token_urlsafe(16)
    env = {"bootstrap_admin_password": password}
    async with serving_api(database_url, tmp_path, env) as client:
        for case in api_lists.cases(seeded):
            # Raises unless 200 with the seed's total.
            _, total = await api_lists.request_once(client, case)
            assert total == case.total

        resources = await add_resources(client, connections=2, variables=2)
        async with signed_in(client.base_url, password) as browser:
            discovery = await discover(browser, pages(seeded, extras, resources))
            assert discovery.failed == {}
            found = {page.path for page in discovery.found}
            assert "/" in found, discovery
            assert any(page.live for page in discovery.found), "no live view found on any page"
            results = await measure_pages(browser, discovery.found, warmup=0, repeat=1)
    assert all(len(r.samples_ms) == 1 and r.bytes > 0 for r in results)
