"""Schemathesis fuzzes every ``/api/v1`` operation of a live stack (PostgreSQL + RabbitMQ).

Each operation gets a bounded, seeded number of generated requests (valid and invalid ones), sent
with the bootstrap admin token; every answer must not be a 5xx, must use a declared status code and
content type, and must match its declared schema. There is one test per operation, named by its
``operationId``; a failure shows the smallest request that broke it as a ``curl`` command.

Schemathesis calls the server with ``requests`` (blocking), so the stack is served from a thread
with an event loop of its own (``ThreadedStack``) and the tests are synchronous. Schemathesis'
own pytest plugin (``from_fixture``) breaks on pytest 9 (it writes ``Node._nodeid``, which pytest
no longer has), so each test builds its Hypothesis test from the public ``as_strategy`` API.

What is left out, and why:
- ``/execution/v1``: the worker-only API, authenticated per attempt by the task message's token
  (an admin token is refused by design); the worker and fencing tests cover it.
- ``/health/*`` and the dashboard: not part of the public REST contract.
Nothing under ``/api/v1`` is excluded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.openapi_export import served_document
from tests.support.stack import Stack, start_stack

pytestmark = [pytest.mark.postgres]

T = TypeVar("T")

EXAMPLES_PER_OPERATION = 25
API_PREFIX = "/api/v1/"

SEEDED_DAG = """
    from weir import dag, task

    @dag(tags=["fuzz"])
    def fuzzed():
        @task
        def hello() -> str:
            print("hello from the fuzzed DAG")
            return "hi"

        hello()

    fuzzed()
"""


def _api_operations() -> list[Any]:
    """``(label, operationId)`` of every public operation, read from the app without serving it."""
    document = served_document()
    return [
        pytest.param(f"{method.upper()} {path}", id=operation.get("operationId", path))
        for path, operations in sorted(document["paths"].items())
        if path.startswith(API_PREFIX)
        for method, operation in sorted(operations.items())
    ]


class ThreadedStack:
    """A ``start_stack`` stack served by an event loop in a thread of its own.

    Startup errors (including the skip, or the CI failure, of a missing service) are re-raised in
    the calling thread, so they end the test as they would in an async one.
    """

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self._backend = backend
        self._tmp_path = tmp_path
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[Stack] = concurrent.futures.Future()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="fuzzed-stack", daemon=True)
        self._teardown_error: BaseException | None = None

    def __enter__(self) -> Stack:
        self._thread.start()
        return self._ready.result(timeout=120)

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        if self._teardown_error is not None:
            raise self._teardown_error

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the stack's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=120)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # pytest's skip and fail outcomes are BaseExceptions
            if self._ready.done():
                self._teardown_error = error
            else:
                self._ready.set_exception(error)
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        async with start_stack(self._backend, self._tmp_path) as stack:
            self._ready.set_result(stack)
            await self._stop.wait()


async def _seed(stack: Stack) -> dict[str, str]:
    """One DAG with one finished run, so reads answer real rows (and their schemas get checked)."""
    stack.write_dag("fuzzed.py", SEEDED_DAG)
    await stack.wait_for_dag("fuzzed")
    run_id = await stack.trigger("fuzzed")
    assert await stack.wait_for_run("fuzzed", run_id) == "success"
    return {"dag_id": "fuzzed", "run_id": run_id, "task_id": "hello"}


@dataclass(frozen=True)
class LiveApi:
    schema: BaseSchema
    headers: dict[str, str]
    known_ids: dict[str, str]


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    host = ThreadedStack("postgres", tmp_path_factory.mktemp("fuzzed"))
    with host as stack:
        known_ids = host.run(_seed(stack))
        schema = schemathesis.openapi.from_url(
            f"{stack.settings.api_url}/openapi.json",
            config=schemathesis.Config.from_dict({"request-timeout": 30}),
        )
        yield LiveApi(schema, {"Authorization": f"Bearer {stack.token}"}, known_ids)


def _cases(api: LiveApi, label: str) -> st.SearchStrategy[Case[Any]]:
    """Valid and invalid requests; half of them name the seeded DAG, run and task in the path,
    so the fuzzer reaches the 2xx answers of reads and actions, not only their 404s."""
    operation = api.schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is in the app's document but not in the served one"
    names = {p.name for p in operation.path_parameters}
    seeded = {name: value for name, value in api.known_ids.items() if name in names}
    fixed: list[dict[str, Any] | None] = [None, seeded] if seeded else [None]
    strategies = [
        operation.as_strategy(mode, path_parameters=path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for path in fixed
    ]
    return st.one_of(*strategies)


@pytest.mark.parametrize("label", _api_operations())
def test_operation_answers_as_documented(live_api: LiveApi, label: str) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same requests on every run: CI is reproducible
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=_cases(live_api, label))
    def answers_as_documented(case: Case[Any]) -> None:
        case.call_and_validate(
            headers=live_api.headers,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    answers_as_documented()
