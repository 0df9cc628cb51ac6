"""The run and task-instance pages of the dashboard, on both backends: what they show (states, map
indexes, wait reasons, the Gantt chart, conf, attempts, return value, params), the actions an
operator takes there (clear, mark: the same use cases as REST, audited as ``dashboard``), what a
viewer may not do, and the log stream (the text so far, then what is appended, then ``complete``).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from app.auth import Role, ensure_password
from app.db.models import AuditEntry
from tests.support.stack import Stack, wait_until

FLAKY = """
    from pathlib import Path
    from weir import Param, dag, task

    READY = Path(__file__).with_name("ready.txt")

    @dag(params={"rows": Param(3, type="integer"), "label": Param("nightly")})
    def flaky():
        @task
        def first() -> int:
            if not READY.exists():
                raise RuntimeError("not ready yet <b>")
            return 20

        @task
        def second(x: int) -> dict:
            print(f"second got {x}")
            return {"total": x + 1, "payload": "z" * 30000}

        second(first())

    flaky()
"""

STUCK = """
    from weir import dag, task

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(queue="nowhere")
    def lonely(x: int) -> int:
        return x

    @task
    def after(values: list[int]) -> int:
        return sum(values)

    @dag
    def stuck():
        after(lonely.expand(x=numbers()))

    stuck()
"""

CHATTY = """
    import time
    from pathlib import Path
    from weir import dag, task

    GO = Path(__file__).with_name("go.txt")

    @dag
    def chatty():
        @task
        def talk() -> None:
            print("first line", flush=True)
            while not GO.exists():
                time.sleep(0.05)
            print("second line", flush=True)
            while not GO.with_name("end.txt").exists():
                time.sleep(0.05)

        talk()

    chatty()
"""


@contextlib.asynccontextmanager
async def _signed_in(
    stack: Stack, first_page: str, username: str = "admin", password: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``Stack.dashboard()``, but the CSRF token comes from ``first_page`` (one of ours),
    so these tests do not depend on the DAG list page."""
    if password is None:
        secret = stack.settings.bootstrap_admin_password
        assert secret is not None
        password = secret.get_secret_value()
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30) as client:
        login = await client.post("/login", data={"username": username, "password": password})
        assert login.status_code == 303, login.text
        page = (await client.get(first_page)).text
        found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page)
        assert found is not None, page
        client.headers["X-CSRF-Token"] = found.group(1)
        yield client


async def _audit(stack: Stack, action: str) -> list[AuditEntry]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return list(rows.all())


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of a server-sent-event stream."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])


async def _read_log(ui: httpx.AsyncClient, url: str, **params: Any) -> tuple[str, list[str]]:
    """The whole streamed log text, and the names of the events, until ``complete``."""
    text, names = "", []
    async with ui.stream("GET", url, params=params) as response:
        assert response.status_code == 200, await response.aread()
        async for event, data in _events(response):
            names.append(event)
            if event == "log":
                text += data
            if event == "complete":
                break
    return text, names


async def test_failed_task_is_shown_and_a_dashboard_clear_retries_it(stack: Stack) -> None:
    path = stack.write_dag("flaky.py", FLAKY)
    await stack.wait_for_dag("flaky")
    run_id = await stack.trigger("flaky", {"rows": 7})
    assert await stack.wait_for_run("flaky", run_id) == "failed"
    run_url = f"/dags/flaky/runs/{run_id}"

    async with _signed_in(stack, run_url) as ui:
        page = (await ui.get(run_url)).text
        assert 'data-task-id="first"' in page and 'data-state="failed"' in page
        assert 'data-task-id="second" data-map-index="-1" data-state="upstream_failed"' in page
        assert "gantt-bar s-failed" in page
        assert "&#34;rows&#34;: 7" in page  # the conf, as escaped JSON
        assert "Clear failed tasks" in page and "Mark failed" in page

        ti_page = (await ui.get(f"{run_url}/tasks/first")).text
        assert "not ready yet &lt;b&gt;" in ti_page  # the attempt's error, escaped
        assert "&#34;label&#34;: &#34;nightly&#34;" in ti_page  # rendered params: defaults…
        assert "&#34;rows&#34;: 7" in ti_page  # … under the run's conf
        log, names = await _read_log(ui, f"/ui/logs/flaky/{run_id}/first")
        assert "RuntimeError: not ready yet &lt;b&gt;" in log  # escaped HTML for htmx to append
        assert names[-1] == "complete"

        path.with_name("ready.txt").write_text("yes")
        answer = await ui.post(f"{run_url}/clear", data={"only_failed": "true"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["HX-Retarget"] == "#toasts" and "Cleared" in answer.text
        assert await stack.wait_for_run("flaky", run_id) == "success"

        second = (await ui.get(f"{run_url}/tasks/second")).text
        assert "&#34;total&#34;: 21" in second  # the return value…
        assert "Truncated: the first 20000 of" in second  # … cut when huge
        first = (await ui.get(f"{run_url}/tasks/first", params={"attempt": 1})).text
        assert 'aria-label="Log of attempt 1"' in first and "Attempt 2" in first

    [entry] = await _audit(stack, "task_instance.clear")
    assert entry.origin == "dashboard" and entry.actor == "admin"
    assert entry.detail == {"task_ids": ["first", "second"], "task_instances": 2,
                            "only_failed": True}  # fmt: skip


async def test_map_indexes_and_wait_reasons_are_shown_and_marks_end_the_run(stack: Stack) -> None:
    stack.write_dag("stuck.py", STUCK)
    await stack.wait_for_dag("stuck")
    run_id = await stack.trigger("stuck")
    run_url = f"/dags/stuck/runs/{run_id}"

    async with _signed_in(stack, run_url) as ui:

        async def waiting_on_a_worker() -> str | None:
            page = (await ui.get(run_url)).text
            return page if page.count("<code>no_worker</code>") == 3 else None

        page = await wait_until(waiting_on_a_worker)
        for index in range(3):
            assert f'data-task-id="lonely" data-map-index="{index}"' in page
            assert f"/tasks/lonely?map_index={index}" in page
        assert "weir worker --queues nowhere" in page
        assert "<code>waiting_for_upstream</code> waiting for upstream task(s) lonely" in page

        one = (await ui.get(f"{run_url}/tasks/lonely", params={"map_index": 1})).text
        assert "Why is it not running?" in one and "[1]" in one
        assert (await ui.get(f"{run_url}/tasks/lonely")).status_code == 404  # which index?

        answer = await ui.post(
            f"{run_url}/tasks/lonely/mark?map_index=2", data={"state": "success"}
        )
        assert answer.status_code == 200 and "Marked success" in answer.text
        instances = await stack.task_instances("stuck", run_id)
        assert instances["after"]["state"] == "none"

        answer = await ui.post(f"{run_url}/mark", data={"state": "failed"})
        assert answer.status_code == 200, answer.text
        assert await stack.wait_for_run("stuck", run_id) == "failed"
        states = {
            (t["task_id"], t["map_index"]): t["state"]
            for t in (await stack.client.get(f"/api/v1/dags/stuck/runs/{run_id}/tasks")).json()[
                "task_instances"
            ]
        }
        assert states[("lonely", 2)] == "success" and states[("lonely", 0)] == "failed"

        refused = await ui.post(f"{run_url}/mark", data={"state": "running"})
        assert refused.status_code == 422

    [mark] = await _audit(stack, "run.mark")
    assert mark.origin == "dashboard" and mark.detail is not None
    assert mark.detail["state"] == "failed"
    [task_mark] = await _audit(stack, "task_instance.mark")
    assert task_mark.origin == "dashboard"


async def test_the_log_streams_what_is_appended_while_the_task_runs(stack: Stack) -> None:
    path = stack.write_dag("chatty.py", CHATTY)
    await stack.wait_for_dag("chatty")
    run_id = await stack.trigger("chatty")

    async def running() -> bool:
        instances = await stack.task_instances("chatty", run_id)
        return instances["talk"]["state"] == "running"

    await wait_until(running)
    async with _signed_in(stack, f"/dags/chatty/runs/{run_id}") as ui:
        url = f"/ui/logs/chatty/{run_id}/talk"
        text, names = "", []
        go, end = path.with_name("go.txt"), path.with_name("end.txt")
        async with ui.stream("GET", url) as response:
            async for event, data in _events(response):
                names.append(event)
                text += data if event == "log" else ""
                if "first line" in text and not go.exists():
                    assert "second line" not in text
                    go.write_text("go")
                    second_due = time.monotonic() + 5  # well before the 15 s keep-alive re-read
                elif "second line" in text and not end.exists():
                    # it arrived while the task still ran: the appended text woke the stream
                    assert time.monotonic() < second_due and "complete" not in names
                    end.write_text("end")
                if event == "complete":
                    break
        assert "second line" in text and text.index("first line") < text.index("second line")
        assert names.count("log") >= 2 and names[-1] == "complete"

        resumed, _ = await _read_log(ui, url, attempt=1)
        assert resumed == text  # a finished attempt: all of it, then complete
        async with ui.stream(
            "GET", url, headers={"Last-Event-ID": str(len(text.encode()) - 5)}
        ) as r:
            tail = [data async for event, data in _events(r) if event == "log"]
        assert tail == [text[-5:]]  # resumes where a reconnecting browser stopped

        assert (await ui.get(url, params={"attempt": 9})).status_code == 404


async def test_a_viewer_sees_no_buttons_and_is_refused_the_actions(stack: Stack) -> None:
    stack.write_dag("flaky.py", FLAKY)
    await stack.wait_for_dag("flaky")
    run_id = await stack.trigger("flaky")
    assert await stack.wait_for_run("flaky", run_id) == "failed"
    async with stack.database.sessions() as session, session.begin():
        await ensure_password(session, "vera", Role.VIEWER, "viewer-pass-1", datetime.now(UTC))

    async with httpx.AsyncClient(base_url=stack.settings.api_url) as ui:
        login = await ui.post("/login", data={"username": "vera", "password": "viewer-pass-1"})
        assert login.status_code == 303
        page = (await ui.get(f"/dags/flaky/runs/{run_id}")).text
        assert "data-task-id" in page and "Clear failed tasks" not in page
        ti_page = (await ui.get(f"/dags/flaky/runs/{run_id}/tasks/first")).text
        assert "Mark success" not in ti_page
        found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page)
        assert found is not None
        headers = {"X-CSRF-Token": found.group(1)}
        for url in (
            f"/dags/flaky/runs/{run_id}/clear",
            f"/dags/flaky/runs/{run_id}/tasks/first/clear",
        ):
            refused = await ui.post(url, data={}, headers=headers)
            assert refused.status_code == 403, refused.text
    assert await _audit(stack, "task_instance.clear") == []
    instances = await stack.task_instances("flaky", run_id)
    assert instances["first"]["state"] == "failed"
