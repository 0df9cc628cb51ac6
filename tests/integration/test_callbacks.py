"""Task callbacks run by the worker, and the failure notifier POSTing to a real HTTP receiver,
end to end on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.notifications import SIGNATURE_HEADER, sign
from tests.support.stack import Stack, free_port, start_stack, wait_until
from weir.dag_file import import_dag_file
from weir.runtime import QuietServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dags" / "callbacks.py"

CALLBACKS = """
    import asyncio
    from pathlib import Path
    from weir import dag, task

    MARKS = Path(__file__).parent.parent / "marks"

    def mark(context):
        MARKS.mkdir(exist_ok=True)
        name = f"{context.task_id}-{context.attempt}-" + ("error" if context.error else "ok")
        (MARKS / name).write_text(context.error or "")
        print(f"callback saw {context.task_id}")

    async def mark_async(context):
        await asyncio.sleep(0)
        mark(context)

    def explode(context):
        raise RuntimeError("callback bug")

    @dag
    def callbacks():
        @task(on_success=mark)
        def ok() -> int:
            return 1

        @task(retries=1, on_retry=mark, on_success=mark_async)
        def flaky() -> None:
            MARKS.mkdir(exist_ok=True)
            if not (MARKS / "tried").exists():
                (MARKS / "tried").touch()
                raise ValueError("first try fails")

        @task(on_failure=mark_async, on_retry=explode)
        async def broken() -> None:
            raise KeyError("always")

        @task(on_success=explode)
        def fine_despite_callback() -> str:
            return "done"

        ok()
        flaky()
        broken()
        fine_despite_callback()

    callbacks()
"""


async def test_task_callbacks_follow_the_state_and_never_change_it(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.callbacks")
    stack.write_dag("callbacks.py", CALLBACKS)
    await stack.wait_for_dag("callbacks")
    run_id = await stack.trigger("callbacks")

    assert await stack.wait_for_run("callbacks", run_id) == "failed"

    marks = stack.dags_folder.parent / "marks"
    expected = {"ok-1-ok", "flaky-1-error", "flaky-2-ok", "broken-1-error"}

    async def marked() -> bool:
        done = expected <= {path.name for path in marks.iterdir()}
        return done and "callback bug" in caplog.text

    await wait_until(marked)
    assert "ValueError: first try fails" in (marks / "flaky-1-error").read_text()
    assert "KeyError: 'always'" in (marks / "broken-1-error").read_text()
    states = {k: v["state"] for k, v in (await stack.task_instances("callbacks", run_id)).items()}
    assert states == {
        "ok": "success",
        "flaky": "success",
        "broken": "failed",
        "fine_despite_callback": "success",
    }
    assert {p.name for p in marks.iterdir()} == expected | {"tried"}  # on_retry: not for 0 retries
    logged = caplog.text  # output and errors of callbacks go to the worker's log
    assert "callback output: callback saw ok" in logged
    assert "on_success callback raised" in logged and "callback bug" in logged


DAG_CALLBACKS = """
    from pathlib import Path
    from weir import dag, get_current_context, task

    MARKS = Path(__file__).parent.parent / "dag-marks"

    def mark(context):
        MARKS.mkdir(exist_ok=True)
        outcome = "failed" if context.error else "succeeded"
        (MARKS / f"{outcome}-{context.conf['n']}").write_text(context.error or "")

    async def mark_async(context):
        assert get_current_context() is context
        mark(context)

    @dag(on_success=mark, on_failure=mark_async)
    def guarded():
        @task
        def maybe_fail() -> None:
            if get_current_context().conf["fail"]:
                raise RuntimeError("asked to fail")

        maybe_fail()

    guarded()
"""


async def test_dag_callbacks_run_once_the_run_ends(stack: Stack) -> None:
    stack.write_dag("guarded.py", DAG_CALLBACKS)
    await stack.wait_for_dag("guarded")
    ok = await stack.trigger("guarded", {"fail": False, "n": 1})
    bad = await stack.trigger("guarded", {"fail": True, "n": 2})
    assert await stack.wait_for_run("guarded", ok) == "success"
    assert await stack.wait_for_run("guarded", bad) == "failed"

    marks = stack.dags_folder.parent / "dag-marks"

    async def marked() -> bool:
        return marks.exists() and {p.name for p in marks.iterdir()} == {"succeeded-1", "failed-2"}

    await wait_until(marked)
    assert (marks / "failed-2").read_text() == "Failed tasks: maybe_fail"


def test_the_example_imports_with_its_callbacks() -> None:
    [built] = import_dag_file(EXAMPLE.parent, EXAMPLE, "weir_example_callbacks")
    assert built.options.on_success is not None and built.options.on_failure is not None
    load = built.tasks["load"].options
    assert load.on_retry is not None and load.on_failure is not None


@dataclass
class Receiver:
    """A webhook endpoint that answers 500 to its first ``failures`` requests."""

    failures: int
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.requests.append((await request.body(), dict(request.headers)))
        return Response(status_code=500 if len(self.requests) <= self.failures else 204)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    port = free_port()
    server = QuietServer(app, "127.0.0.1", port, "warning")
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(_started(server))
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.shutdown()
        await task


def _started(server: QuietServer) -> Any:
    async def check() -> bool:
        return server.started

    return check


FAILING = """
    from weir import dag, task

    @dag
    def nightly():
        @task(retries=1)
        def load() -> None:
            raise RuntimeError("warehouse is down")

        @task
        def report() -> None:
            pass

        load() >> report()

    nightly()
"""


async def test_failed_run_is_notified_signed_and_retried(backend: str, tmp_path: Path) -> None:
    receiver = Receiver(failures=2)
    secret = "s3cret-for-the-receiver"
    async with (
        serving(receiver) as url,
        start_stack(backend, tmp_path, notify_url=url, notify_secret=secret) as stack,
    ):
        stack.write_dag("nightly.py", FAILING)
        await stack.wait_for_dag("nightly")
        run_id = await stack.trigger("nightly")
        assert await stack.wait_for_run("nightly", run_id) == "failed"

        async def answered() -> bool:
            return len(receiver.requests) >= 3

        await wait_until(answered)
        summary = json.loads(receiver.requests[-1][0])
        response = await stack.client.get(summary["url"])  # the link in the summary works
        assert response.status_code == 200 and response.json()["run_id"] == run_id

    bodies = {body for body, _ in receiver.requests}
    assert len(bodies) == 1 and len(receiver.requests) == 3  # the same summary, retried twice
    body, headers = receiver.requests[-1]
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], sign(body, secret))
    summary = json.loads(body)
    assert summary["dag_id"] == "nightly" and summary["run_id"] == run_id
    assert summary["state"] == "failed" and summary["logical_date"]
    [failed] = summary["failed_tasks"]
    assert failed["task_id"] == "load" and failed["attempts"] == 2
    assert "RuntimeError: warehouse is down" in failed["error"]
