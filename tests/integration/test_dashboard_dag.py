"""The DAG page of the dashboard, on both backends: the grid (runs by tasks, mapped tasks as one
row, links to the task instances), the graph (a node per task coloured by the chosen run), the
run list with its filter, the details (schedule, next runs, params, webhooks and deliveries,
never a secret), the code tab (only inside the DAGs folder), tabs loaded by htmx, the live
stream, what a viewer sees, and the 404 of an unknown DAG.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html import unescape
from urllib.parse import quote

import httpx
from sqlalchemy import update

from app.auth import Role, ensure_password
from app.db.models import Dag
from tests.support.stack import Stack

PIPELINE = """
    from datetime import datetime
    from weir import Param, Webhook, dag, get_current_context, task

    @dag(
        schedule="30 6 * * 1-5",
        start_date=datetime(2099, 1, 1),  # scheduled, but no scheduled run during the test
        timezone="Europe/Paris",
        tags=["etl", "demo"],
        params={"fail": Param(False, type="boolean"), "rows": Param(type="integer", minimum=1)},
        triggers=[Webhook("shop")],
    )
    def pipeline():
        \"\"\"Loads the shop's orders.\"\"\"

        @task
        def extract() -> list[int]:
            return [1, 2, 3]

        @task
        def double(x: int) -> int:
            return 2 * x

        @task
        def load(values: list[int]) -> int:
            if get_current_context().params["fail"]:
                raise RuntimeError("asked to fail")
            return sum(values)

        load(double.expand(x=extract()))

    pipeline()
"""


async def _pipeline_with_runs(stack: Stack) -> list[str]:
    """The DAG with one successful run, then one failed run (in that order)."""
    stack.write_dag("pipeline.py", PIPELINE)
    await stack.wait_for_dag("pipeline")
    runs = []
    for fail in (False, True):
        run_id = await stack.trigger("pipeline", {"rows": 5, "fail": fail})
        assert await stack.wait_for_run("pipeline", run_id) == ("failed" if fail else "success")
        runs.append(run_id)
    return runs


@contextlib.asynccontextmanager
async def _signed_in(
    stack: Stack, username: str = "admin", password: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client with a dashboard session (this page only reads, so no CSRF token;
    unlike ``Stack.dashboard()`` it does not depend on the DAG list page)."""
    if password is None:
        secret = stack.settings.bootstrap_admin_password
        assert secret is not None
        password = secret.get_secret_value()
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30) as client:
        login = await client.post("/login", data={"username": username, "password": password})
        assert login.status_code == 303, login.text
        yield client


def _cells(html: str) -> dict[tuple[str, str], tuple[str, str]]:
    """``(task_id, run_id) -> (state, href)`` of every grid cell."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for row in re.finditer(r'<tr data-task-id="([^"]+)">(.*?)</tr>', html, re.S):
        for cell in re.finditer(
            r'<td data-run-id="([^"]+)" data-state="([^"]+)">\s*<a class="sq[^"]*" href="([^"]+)"',
            row.group(2),
        ):
            found[(row.group(1), cell.group(1))] = (cell.group(2), cell.group(3))
    return found


async def test_grid_graph_and_runs_show_the_runs_of_the_dag(stack: Stack) -> None:
    first, second = await _pipeline_with_runs(stack)
    async with _signed_in(stack) as ui:
        page = await ui.get("/dags/pipeline")
        assert page.status_code == 200, page.text
        html = page.text

        # Grid: tasks in topological order, runs oldest first, every cell a link to its instance.
        assert re.findall(r'<tr data-task-id="([^"]+)">', html) == ["extract", "double", "load"]
        headers = re.findall(r'<th scope="col" class="dag-page-run" data-run-id="([^"]+)"', html)
        assert headers == [first, second]
        cells = _cells(html)
        base = f"/dags/pipeline/runs/{quote(first, safe='')}/tasks"
        assert cells[("extract", first)] == ("success", f"{base}/extract")
        assert cells[("load", second)][0] == "failed"
        assert cells[("double", first)] == ("success", f"{base}/double?map_index=0")
        assert html.count('class="dag-page-count">3/3</small>') == 2  # the mapped row, both runs
        assert f'href="/dags/pipeline/runs/{quote(second, safe="")}"' in html
        assert "At 06:30" in html and "<code>30 6 * * 1-5</code>" in html  # header schedule
        assert "Loads the shop" in html

        # Graph: the latest run by default, another one by ?run_id=.
        graph = (await ui.get("/dags/pipeline", params={"tab": "graph"})).text
        found = re.findall(r'class="dag-page-node s-([a-z_]+)" data-task-id="([^"]+)"', graph)
        nodes = {task_id: state for state, task_id in found}
        assert nodes == {"extract": "success", "double": "success", "load": "failed"}
        assert graph.count('class="dag-page-edge"') == 2
        assert (
            "<svg" in graph and "viewBox=" in graph and 'marker-end="url(#dag-page-arrow)"' in graph
        )
        older = (await ui.get("/dags/pipeline", params={"tab": "graph", "run_id": first})).text
        assert 'class="dag-page-node s-success" data-task-id="load"' in older
        assert f'href="{base}/load"' in older

        # Runs: newest first, filtered by state.
        runs = (await ui.get("/dags/pipeline", params={"tab": "runs"})).text
        assert re.findall(r'<tr data-run-id="([^"]+)">', runs) == [second, first]
        failed = (await ui.get("/dags/pipeline", params={"tab": "runs", "state": "failed"})).text
        assert re.findall(r'<tr data-run-id="([^"]+)">', failed) == [second]
        assert "1 run<" in failed

        # A tab asked for by htmx is the tab's body alone.
        swap = await ui.get("/dags/pipeline?tab=runs", headers={"HX-Request": "true"})
        assert swap.text.lstrip().startswith('<div id="dag-page-body">')
        assert "<html" not in swap.text and swap.headers["vary"] == "HX-Request"

        # Hostile query values fall back to the defaults rather than failing.
        odd = await ui.get("/dags/pipeline", params={"tab": "nope", "page": "-3", "state": "x"})
        assert odd.status_code == 200 and 'data-task-id="extract"' in odd.text


async def test_the_live_stream_renders_the_open_tab(stack: Stack) -> None:
    first, _ = await _pipeline_with_runs(stack)
    async with _signed_in(stack) as ui:
        page = (await ui.get("/dags/pipeline", params={"tab": "graph", "run_id": first})).text
        found = re.search(r'sse-connect="([^"]+)"', page)
        assert found is not None
        url = found.group(1).replace("&amp;", "&")
        assert re.search(r"&v=[0-9a-f]+\.\d+$", url)  # where the state stood for the page
        # Without it the stream does not know the page is current: it renders at once.
        async with ui.stream("GET", re.sub(r"&v=[^&]+$", "", url)) as response:
            assert response.status_code == 200
            event, data = await _first_event(response.aiter_lines())
        assert event == "dag-page-graph"
        assert 'class="dag-page-node s-success" data-task-id="load"' in data


async def _first_event(lines: AsyncIterator[str]) -> tuple[str, str]:
    event, data = "", []
    async for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:])
        elif not line and data:
            return event, "\n".join(data)
    raise AssertionError("the stream ended without an event")


async def test_details_show_schedule_params_and_webhooks_but_no_secret(stack: Stack) -> None:
    stack.write_dag("pipeline.py", PIPELINE)
    await stack.wait_for_dag("pipeline")
    unsigned = await stack.client.post("/api/v1/webhooks/pipeline.shop", json={"order": 1})
    assert unsigned.status_code >= 400
    secret = "a-very-secret-webhook-key-1234"
    answer = await stack.client.post(
        "/api/v1/webhooks/pipeline.shop/secret", json={"secret": secret}
    )
    assert answer.status_code == 200, answer.text

    async with _signed_in(stack) as ui:
        html = (await ui.get("/dags/pipeline", params={"tab": "details"})).text

    assert secret not in html
    assert f"{stack.settings.api_url}/api/v1/webhooks/pipeline.shop" in html
    assert ">set<" in html and "GitHub (X-Hub-Signature-256)" in html
    deliveries = re.search(r"Latest deliveries(.*?)</table>", html, re.S)
    assert deliveries is not None and deliveries.group(1).count("<tr>") == 2  # header + one
    assert "Europe/Paris" in html and "<code>30 6 * * 1-5</code>" in html
    planned = re.search(r'<ol class="dag-page-next">(.*?)</ol>', html, re.S)
    assert planned is not None
    next_runs = re.findall(r'<time datetime="([^"]+)"', planned.group(1))
    assert len(next_runs) == 5
    moments = [datetime.fromisoformat(moment) for moment in next_runs]
    assert moments == sorted(moments) and all(m.weekday() < 5 for m in moments)
    assert all(m > datetime.now(UTC) for m in moments)
    assert "<code>rows</code>" in html and "<em>required</em>" in html
    assert '{"minimum": 1, "type": "integer"}' in unescape(html)


async def test_code_tab_shows_the_file_to_a_viewer_and_nothing_outside_the_folder(
    stack: Stack,
) -> None:
    stack.write_dag("pipeline.py", PIPELINE)
    await stack.wait_for_dag("pipeline")
    (stack.dags_folder.parent / "outside.py").write_text("TOP_SECRET = 1\n")
    async with stack.database.sessions() as session, session.begin():
        await ensure_password(session, "vera", Role.VIEWER, "viewer-password-1", datetime.now(UTC))

    async with _signed_in(stack, "vera", "viewer-password-1") as viewer:
        code = (await viewer.get("/dags/pipeline", params={"tab": "code"})).text
        lines = re.findall(r'<span class="ln">(.*?)</span>', code)
        source = (stack.dags_folder / "pipeline.py").read_text().splitlines()
        assert [unescape(line) for line in lines] == source
        assert "schedule=&#34;30 6 * * 1-5&#34;" in code  # escaped text, never markup

        async with stack.database.sessions() as session, session.begin():
            await session.execute(
                update(Dag).where(Dag.dag_id == "pipeline").values(fileloc="../outside.py")
            )
        refused = (await viewer.get("/dags/pipeline", params={"tab": "code"})).text
        assert "outside the DAGs folder" in refused and "TOP_SECRET" not in refused

        missing = await viewer.get("/dags/no_such_dag")
        assert missing.status_code == 404
        assert "no DAG" in missing.text and "text/html" in missing.headers["content-type"]
