"""The dashboard pages the benchmark times (and its smoke test checks), and how one is fetched.

The candidates name every page issue 5 describes, filled with names from the seed; which of
them exist is found out at run time (``discover``): a 404 is *missing*, not a failure, so the
benchmark runs whatever part of the dashboard has landed. Each page's live views are found in
its HTML (``sse-connect="/ui/live/…"``) and timed to their first event: the stream renders every
fragment before it sends the first, so that is the view's first render.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import httpx
from fastapi.routing import APIRoute

from bench.seed import Seeded, dag_id_of
from bench.seed_dashboard import DashboardSeeded

__all__ = [
    "Answer",
    "Discovery",
    "Page",
    "Resources",
    "add_resources",
    "discover",
    "fetch",
    "is_routed",
    "pages",
    "signed_in",
]

FIRST_EVENT_TIMEOUT = 10.0
_SSE_CONNECT = re.compile(r'sse-connect="(/ui/live/[^"]+)"')
_WITHOUT_MARK = re.compile(r"[?&]v=[^&]*$")


@dataclass(frozen=True)
class Page:
    """One GET of the dashboard; ``expect`` is a text the page must show (a seeded name)."""

    name: str
    path: str
    expect: str | None = None
    live: bool = False


@dataclass(frozen=True)
class Resources:
    """Connections and variables made through the REST API (their secrets need its key)."""

    connections: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()


def _segment(value: str) -> str:
    return quote(value, safe="")


def pages(seeded: Seeded, extras: DashboardSeeded, resources: Resources) -> list[Page]:
    """Every page of issue 5, the expensive variants included (deep pages, filters, big DAG)."""
    big, small = seeded.big_dag_id, dag_id_of(1)
    dag = f"/dags/{_segment(big)}"
    finished = f"{dag}/runs/{_segment(seeded.sample_run_id)}"
    found = [
        Page("DAGs", "/", dag_id_of(0)),
        Page("DAGs, page 5", "/?page=5"),
        Page(f"DAGs, tag={seeded.tag}", f"/?tag={seeded.tag}", dag_id_of(3)),
        Page("DAGs, search", "/?q=bench_dag_00", dag_id_of(1)),
        Page("DAGs, state=failed", "/?state=failed"),
        *(Page(f"big DAG, {tab}", f"{dag}?tab={tab}", big)
          for tab in ("grid", "graph", "runs", "details", "code")),
        Page("big DAG, runs page 100", f"{dag}?tab=runs&page=100", big),
        Page("big DAG, failed runs", f"{dag}?tab=runs&state=failed", big),
        Page("small DAG, grid", f"/dags/{_segment(small)}", small),
        Page("trigger form", f"{dag}/trigger", big),
        Page("finished run", finished, seeded.sample_run_id),
        Page("finished run, task", f"{finished}/tasks/step__9", "step__9"),
    ]  # fmt: skip
    if extras.live_run_id is not None:
        live = f"{dag}/runs/{_segment(extras.live_run_id)}"
        found += [
            Page("running run", live, extras.live_run_id),
            Page("running run, running task", f"{live}/tasks/step__2", "step__2"),
            Page("running run, waiting task", f"{live}/tasks/step__5", "step__5"),
        ]
    deep_audit = extras.audit_entries // 2
    found += [
        Page("connections", "/connections", next(iter(resources.connections), None)),
        *(Page("connection", f"/connections/{_segment(c)}", c) for c in resources.connections[:1]),
        Page("variables", "/variables", next(iter(resources.variables), None)),
        *(Page("variable", f"/variables/{_segment(v)}", v) for v in resources.variables[:1]),
        Page("admin: users", "/admin/users", "admin"),
        Page("admin: tokens", "/admin/tokens"),
        Page("admin: audit", "/admin/audit"),
        Page(f"admin: audit, offset {deep_audit:,}", f"/admin/audit?offset={deep_audit}"),
        Page("admin: import errors", "/admin/import-errors", "broken/dag_0.py"
             if extras.import_errors else None),
        Page("admin: webhooks", "/admin/webhooks"),
    ]  # fmt: skip
    return found


async def add_resources(client: httpx.AsyncClient, connections: int, variables: int) -> Resources:
    """Create connections and variables through the REST API (admin ``client``)."""
    conn_ids, keys = [f"bench_conn_{n:03d}" for n in range(connections)], []
    for n, conn_id in enumerate(conn_ids):
        body = {"conn_id": conn_id, "conn_type": "postgres", "host": f"db{n}.example.com",
                "port": 5432, "login": "etl", "password": f"secret-{n}"}  # fmt: skip
        response = await client.post("/api/v1/connections", json=body)
        response.raise_for_status()
    for n in range(variables):
        keys.append(f"bench_var_{n:03d}")
        body = {"value": f"value {n}", "is_secret": n % 5 == 0}
        response = await client.put(f"/api/v1/variables/{keys[-1]}", json=body)
        response.raise_for_status()
    return Resources(tuple(conn_ids), tuple(keys))


@contextlib.asynccontextmanager
async def signed_in(base_url: httpx.URL | str, password: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the bootstrap admin's session cookie, as a browser after sign-in."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.post("/login", data={"username": "admin", "password": password})
        if response.status_code != 303:
            raise RuntimeError(f"sign-in failed: {response.status_code} {response.text[:300]}")
        yield client


@dataclass(frozen=True)
class Answer:
    status: int
    ms: float
    body: str


async def fetch(client: httpx.AsyncClient, page: Page) -> Answer:
    """One full-page GET (or a live view's first event), timed as the client sees it."""
    started = time.perf_counter()
    if not page.live:
        response = await client.get(page.path)
        return Answer(response.status_code, _ms_since(started), response.text)
    async with client.stream("GET", page.path, headers={"Accept": "text/event-stream"}) as stream:
        if stream.status_code != 200:
            await stream.aread()
            return Answer(stream.status_code, _ms_since(started), stream.text)
        try:
            async with asyncio.timeout(FIRST_EVENT_TIMEOUT):
                event = await _first_event(stream)
        except TimeoutError:
            return Answer(0, _ms_since(started), f"no event within {FIRST_EVENT_TIMEOUT} s")
        return Answer(200, _ms_since(started), event)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def _first_event(stream: httpx.Response) -> str:
    lines: list[str] = []
    async for line in stream.aiter_lines():
        if line:
            lines.append(line)
        elif any(not part.startswith(":") for part in lines):  # a comment (ping) is no event
            break
    return "\n".join(lines)


@dataclass
class Discovery:
    """Which candidates answer: timed, missing (404), or failed (anything else)."""

    found: list[Page] = field(default_factory=list)
    missing: list[Page] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # page name -> what went wrong


async def discover(client: httpx.AsyncClient, candidates: Sequence[Page]) -> Discovery:
    """Request every candidate once, then every live view the found pages open."""
    discovery = Discovery()
    streams: dict[str, Page] = {}
    for page in candidates:
        answer = await _classify(client, page, discovery)
        for url in _SSE_CONNECT.findall(answer.body) if answer.status == 200 else []:
            # Without the page's ``v`` mark the stream renders at once: its first render is timed.
            path = _WITHOUT_MARK.sub("", html.unescape(url))
            streams.setdefault(path, Page(f"{page.name}: live", path, live=True))
    for stream in streams.values():
        await _classify(client, stream, discovery)
    return discovery


def is_routed(path: str) -> bool:
    """Whether the dashboard has a GET route for ``path``: a 404 from a route is a failure (a
    seeded thing it cannot find), a 404 without one a page not built yet."""
    from app.dashboard.routes import router

    bare = unquote(urlsplit(path).path)
    return any(
        isinstance(route, APIRoute)
        and "GET" in (route.methods or ())
        and route.path_regex.match(bare)
        for route in router.routes
    )


async def _classify(client: httpx.AsyncClient, page: Page, discovery: Discovery) -> Answer:
    answer = await fetch(client, page)
    if answer.status == 404 and not is_routed(page.path):
        discovery.missing.append(page)
    elif answer.status != 200:
        discovery.failed[page.name] = f"GET {page.path}: {answer.status} {answer.body[:300]}"
    elif page.expect is not None and page.expect not in answer.body:
        discovery.failed[page.name] = f"GET {page.path}: 200 without {page.expect!r}"
    else:
        discovery.found.append(page)
    return answer
