"""The DAGs page against a real stack, read as HTML: schedule in words, owner, last runs, filters
that the live stream keeps, paging, the pause switch and the trigger form (roles, CSRF, field
errors, audit)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from app.auth import Role, ensure_password
from app.db.models import AuditEntry
from tests.support.stack import Stack, wait_until

DAGS = """
from datetime import datetime
from weir import Param, dag, task

FUTURE = datetime(2100, 1, 1)  # scheduled, but no run until then

@dag(schedule="0 6 * * 1-5", start_date=FUTURE, tags=["etl"], owner="data-team",
     params={"rows": Param(3, type="integer", minimum=1, description="rows to load"),
             "mode": Param("fast", enum=["fast", "safe"]),
             "dry": Param(False, type="boolean"),
             "extra": Param({"a": 1}, type="object")})
def orders():
    @task
    def load() -> None: ...

    load()

orders()

@dag(schedule="@daily", start_date=FUTURE, tags=["bi"])
def reports():
    @task
    def build() -> None: ...

    build()

reports()

@dag
def adhoc():
    @task
    def once() -> None: ...

    once()

adhoc()
"""

MANY = """
from weir import dag, task

def make(number):
    @dag(dag_id=f"bulk_{number:02d}")
    def bulk():
        @task
        def noop() -> None: ...

        noop()

    return bulk()

for number in range(55):
    make(number)
"""


def _dag_ids(html: str) -> list[str]:
    return re.findall(r'data-dag-id="([^"]+)"', html)


async def _ready(stack: Stack) -> None:
    stack.write_dag("three.py", DAGS)
    for dag_id in ("orders", "reports", "adhoc"):
        await stack.wait_for_dag(dag_id)


async def test_rows_show_schedule_owner_and_last_runs_and_filters_narrow_them(
    stack: Stack,
) -> None:
    await _ready(stack)
    run_id = await stack.trigger("adhoc")
    assert await stack.wait_for_run("adhoc", run_id) == "success"

    async with stack.dashboard() as ui:
        html = (await ui.get("/")).text
        assert _dag_ids(html) == ["adhoc", "orders", "reports"]
        assert "At 06:00, Monday through Friday" in html and "0 6 * * 1-5" in html
        assert "At 00:00, every day" in html and "Manual runs only" in html
        assert "data-team" in html
        assert f'href="/dags/adhoc/runs/{run_id.replace(":", "%3A").replace("+", "%2B")}"' in html
        assert 'class="sq s-success"' in html
        assert "1\N{EN DASH}3 of 3 DAGs" in html

        async def ids(**query: str) -> list[str]:
            return _dag_ids((await ui.get("/", params=query)).text)

        assert await ids(tag="etl") == ["orders"]
        assert await ids(q="REP") == ["reports"]
        assert await ids(q="%") == []
        assert await ids(state="success") == ["adhoc"]
        assert await ids(state="none") == ["orders", "reports"]
        assert await ids(state="bogus", q="x" * 300) == ["adhoc", "orders", "reports"]
        assert "No DAG matches these filters" in (await ui.get("/?q=nothing")).text

        live_part = await ui.get("/", params={"tag": "bi"}, headers={"HX-Target": "dags-live"})
        assert "<html" not in live_part.text
        assert 'sse-connect="/ui/live/dags?tag=bi&amp;v=' in live_part.text
        assert _dag_ids(live_part.text) == ["reports"]


async def test_the_live_stream_keeps_the_page_filters(stack: Stack) -> None:
    await _ready(stack)
    event, data = None, ""
    async with (
        stack.dashboard() as ui,
        ui.stream("GET", "/ui/live/dags", params={"tag": "etl"}) as events,
    ):
        async for line in events.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "dag-table":
                data += line[5:]
            elif not line and data:
                break
    assert _dag_ids(data) == ["orders"]


async def test_pages_of_fifty(stack: Stack) -> None:
    stack.write_dag("many.py", MANY)
    await stack.wait_for_dag("bulk_54")
    async with stack.dashboard() as ui:
        first = (await ui.get("/")).text
        second = (await ui.get("/", params={"page": "2"})).text
        beyond = (await ui.get("/", params={"page": "9"})).text
    assert len(_dag_ids(first)) == 50 and "1\N{EN DASH}50 of 55 DAGs" in first
    assert 'href="/?page=2"' in first
    assert _dag_ids(second) == [f"bulk_{n}" for n in range(50, 55)]
    assert "51\N{EN DASH}55 of 55 DAGs" in second and 'rel="prev"' in second
    assert _dag_ids(beyond) == [] and "go to the first page" in beyond


async def test_the_pause_switch_pauses_and_unpauses_with_an_audit_entry(stack: Stack) -> None:
    await _ready(stack)
    async with stack.dashboard() as ui:
        row = await ui.post("/dags/reports/pause")
        assert row.status_code == 200, row.text
        assert 'aria-pressed="true"' in row.text and 'hx-post="/dags/reports/unpause"' in row.text
        assert (await stack.client.get("/api/v1/dags/reports")).json()["is_paused"] is True

        row = await ui.post("/dags/reports/unpause")
        assert 'aria-pressed="false"' in row.text
        assert (await stack.client.get("/api/v1/dags/reports")).json()["is_paused"] is False

        missing = await ui.post("/dags/nowhere/pause", headers={"HX-Request": "true"})
        assert missing.status_code == 404 and missing.headers["HX-Retarget"] == "#toasts"
        forged = await ui.post("/dags/reports/pause", headers={"X-CSRF-Token": "forged"})
        assert forged.status_code == 403
    async with stack.database.sessions() as session:
        entries = await session.execute(
            select(AuditEntry.action, AuditEntry.target, AuditEntry.origin)
            .where(AuditEntry.action.like("dag.%"))
            .order_by(AuditEntry.id)
        )
        assert entries.all() == [
            ("dag.pause", "reports", "dashboard"),
            ("dag.unpause", "reports", "dashboard"),
        ]


async def test_a_viewer_sees_no_switch_or_trigger_and_cannot_use_them(stack: Stack) -> None:
    await _ready(stack)
    async with stack.database.sessions() as session, session.begin():
        await ensure_password(session, "vera", Role.VIEWER, "viewer-password", datetime.now(UTC))
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as viewer:
        login = {"username": "vera", "password": "viewer-password"}
        assert (await viewer.post("/login", data=login)).status_code == 303
        page = (await viewer.get("/")).text
        assert _dag_ids(page) == ["adhoc", "orders", "reports"]
        assert 'class="switch"' not in page and "Trigger " not in page
        token = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1)}
        assert (await viewer.post("/dags/orders/pause", headers=headers)).status_code == 403
        assert (await viewer.get("/dags/orders/trigger")).status_code == 403
        refused = await viewer.post("/dags/orders/trigger", headers=headers)
        assert refused.status_code == 403
    assert (await stack.client.get("/api/v1/dags/orders")).json()["is_paused"] is False


async def test_the_trigger_form_follows_the_params_and_shows_field_errors(stack: Stack) -> None:
    await _ready(stack)
    await stack.client.patch("/api/v1/dags/orders", json={"is_paused": True})  # runs stay queued
    async with stack.dashboard() as ui:
        form = (await ui.get("/dags/orders/trigger")).text
        assert re.search(r'type="number"[^>]*name="param.rows" value="3"', form)
        assert re.search(r'type="checkbox"[^>]*name="param.dry"', form)
        assert '<option value="&#34;fast&#34;" selected>fast</option>' in form
        assert "rows to load" in form and "This DAG is paused" in form
        assert re.search(r'<textarea[^>]*name="param.extra"[^>]*>\{\s*&#34;a&#34;: 1\s*\}', form)

        fields = {"param.rows": "0", "param.mode": '"fast"', "param.extra": "{oops"}
        refused = await ui.post("/dags/orders/trigger", data=fields)
        assert refused.status_code == 422
        assert "0 is less than the minimum of 1" in refused.text
        assert "is not valid JSON" in refused.text
        assert 'value="0"' in refused.text, "what was typed is shown again"
        nul = await ui.post(
            "/dags/orders/trigger", data={"param.rows": "2", "param.extra": '"\\u0000"'}
        )
        assert nul.status_code == 422 and "NUL" in nul.text

        fields = {"param.rows": "7", "param.mode": '"safe"', "param.dry": "on", "param.extra": "[]"}
        refused = await ui.post("/dags/orders/trigger", data=fields)
        assert refused.status_code == 422 and "is not of type" in refused.text

        fields["param.extra"] = '{"b": 2}'
        done = await ui.post("/dags/orders/trigger", data=fields)
        assert done.status_code == 200, done.text
        assert done.headers["HX-Retarget"] == "#toasts"
        assert done.headers["HX-Trigger"] == "weir:run-triggered"
    runs = (await stack.client.get("/api/v1/dags/orders/runs")).json()["dag_runs"]
    assert [r["conf"] for r in runs] == [
        {"rows": 7, "mode": "safe", "dry": True, "extra": {"b": 2}}
    ]
    assert (
        f"/dags/orders/runs/{runs[0]['run_id'].replace(':', '%3A').replace('+', '%2B')}"
        in done.text
    )
    async with stack.database.sessions() as session:
        entry = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.origin).where(
                    AuditEntry.action == "run.trigger"
                )
            )
        ).one()
    assert tuple(entry) == ("run.trigger", "dashboard")


async def test_a_dag_without_params_takes_an_optional_json_conf(stack: Stack) -> None:
    await _ready(stack)
    async with stack.dashboard() as ui:
        form = (await ui.get("/dags/adhoc/trigger")).text
        assert 'name="conf"' in form and "has no params" in form
        for bad, message in (("[1]", "must be a JSON object"), ("{", "is not valid JSON")):
            refused = await ui.post("/dags/adhoc/trigger", data={"conf": bad})
            assert refused.status_code == 422 and message in refused.text
        done = await ui.post("/dags/adhoc/trigger", data={"conf": json.dumps({"note": "hi"})})
        assert done.status_code == 200, done.text
        plain = await ui.post("/dags/adhoc/trigger", data={})
        assert plain.status_code == 200, plain.text

    async def two_runs() -> list[dict[str, object]] | None:
        runs = (await stack.client.get("/api/v1/dags/adhoc/runs")).json()["dag_runs"]
        return runs if len(runs) == 2 else None

    confs = sorted(json.dumps(run["conf"]) for run in await wait_until(two_runs))
    assert confs == ['{"note": "hi"}', "{}"]
