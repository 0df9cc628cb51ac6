"""Fixtures of the chaos suite: a private PostgreSQL and a private RabbitMQ started once for the
session (restart tests restart them; the others reuse them), a fresh database and broker namespace
per test, a ``Cluster`` of real ``weir api`` and ``weir worker`` processes, and ``figures``, which
collects each test's measurements into tests/artifacts/chaos/figures.json.

When a private service cannot start, a chaos test skips on a developer's machine and fails in CI
(``CI=true``): a chaos suite that skips is a chaos suite that never ran.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import Cluster
from tests.support.private_postgres import PrivatePostgres
from tests.support.private_rabbitmq import PrivateRabbitMQ

FIGURES = Path(__file__).resolve().parents[1] / "artifacts" / "chaos" / "figures.json"
_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


def _unavailable(service: str, error: BaseException) -> None:
    reason = f"The chaos suite's private {service} did not start: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}\nCI=true: the chaos suite must run, never skip.")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres.create()
    except (OSError, RuntimeError, KeyError) as error:
        _unavailable("PostgreSQL", error)
        raise
    try:
        try:
            server.start()
        except (OSError, RuntimeError) as error:
            _unavailable("PostgreSQL", error)
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ.create()
    try:
        try:
            node.start()
        except (OSError, RuntimeError) as error:
            _unavailable("RabbitMQ", error)
        yield node
    finally:
        node.remove()


@pytest.fixture(scope="session")
def _figures_file() -> Iterator[dict[str, Any]]:
    collected: dict[str, Any] = {}
    yield collected
    if collected:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        FIGURES.write_text(json.dumps({**previous, **collected}, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest, _figures_file: dict[str, Any]) -> dict[str, Any]:
    """The test's measurements: printed at the end of the test and saved with the others."""
    measured: dict[str, Any] = {}
    _figures_file[request.node.name] = measured
    request.addfinalizer(lambda: print(f"\nchaos figures {request.node.name}: {measured}"))
    return measured


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest,
    private_postgres: PrivatePostgres,
    private_rabbitmq: PrivateRabbitMQ,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """No process yet: the test starts the replicas and workers it needs."""
    if not await private_postgres.is_ready():  # a restart test that failed half-way
        private_postgres.start()
    database_url = await private_postgres.create_database()
    try:
        with contextlib.ExitStack() as exits:
            running = Cluster(database_url, private_rabbitmq.url, tmp_path, exits)
            try:
                yield running
            finally:
                running.resume_all()  # before the processes' SIGTERM: a stopped one hears it
                if request.node.stash.get(_CALL_FAILED, False):
                    print(running.log_tails())
        await _delete_namespace(private_rabbitmq.url, running.namespace)
    finally:
        await private_postgres.drop_database(database_url)


async def _delete_namespace(url: str, namespace: str) -> None:
    from weir.broker.rabbitmq import RabbitMQBroker

    broker = RabbitMQBroker(url, namespace=namespace, publish_timeout=10)
    with contextlib.suppress(Exception):
        await broker.connect()
        await broker.delete_namespace(["default"])
    await broker.close()
