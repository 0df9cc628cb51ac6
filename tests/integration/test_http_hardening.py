"""HTTP hardening on a real server: bodies refused before they are read (size, token), run confs
bounded wherever they come in, security headers on every answer, and a deadline on request heads.
See docs/decisions/http-hardening.md."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.support.stack import Stack, free_port, start_stack, wait_until
from weir.runtime import QuietServer

HUGE = 150 * 1024 * 1024
PLAIN = """
    from weir import dag, task

    @dag
    def plain():
        @task
        def noop() -> None:
            pass

        noop()

    plain()
"""
CHATTY = """
    from weir import dag, task

    @dag
    def chatty():
        @task
        def shout() -> int:
            print("x" * 3_000_000)  # all at once, just before the task ends
            return 1

        shout()

    chatty()
"""
BIG_CONF = {"blob": "y" * 70_000}


async def send_head(port: int, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send a request's head (never its body) and read the answer: status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(10):  # without an early answer, the server waits for the body
            status = int((await reader.readline()).split()[1])
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body
    finally:
        writer.close()


def post_head(path: str, length: int, token: str | None = None) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {length}\r\n\r\n"
    )


async def test_huge_bodies_are_refused_before_they_are_sent(stack: Stack) -> None:
    port = stack.settings.port
    runs = "/api/v1/dags/plain/runs"

    # Over the limit: refused on its length alone, token or not (no database read either).
    for token in (None, stack.token):
        status, headers, body = await send_head(port, post_head(runs, HUGE, token))
        assert status == 413 and headers["content-type"] == "application/problem+json"
        assert b"WEIR_MAX_REQUEST_BODY_BYTES" in body and b"1 MiB" in body
    # Within the limit but without a valid token: refused before the body comes.
    status, headers, body = await send_head(port, post_head(runs, 1000))
    assert status == 401 and headers["www-authenticate"] == "Bearer", body
    status, _, body = await send_head(port, post_head(runs, 1000, "weir_not-a-real-token"))
    assert status == 401 and b"unknown, revoked or expired" in body

    finish = "/execution/v1/task-instances/1/finish"
    assert (await send_head(port, post_head(finish, 1000)))[0] == 401
    status, _, body = await send_head(port, post_head(finish, HUGE, "any-attempt-token"))
    assert status == 413 and b"WEIR_MAX_EXECUTION_BODY_BYTES" in body

    status, _, body = await send_head(port, post_head("/login", HUGE))
    assert status == 413, body


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_streamed_body_is_cut_off_at_the_limit(stack: Stack) -> None:
    stack.write_dag("plain.py", PLAIN)
    await stack.wait_for_dag("plain")

    async def endless_json() -> AsyncIterator[bytes]:
        yield b'{"conf": {"x": "'
        for _ in range(64):
            yield b"z" * 65536
        yield b'"}}'

    response = await stack.client.post("/api/v1/dags/plain/runs", content=endless_json())
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "WEIR_MAX_REQUEST_BODY_BYTES" in response.json()["detail"]
    assert (await stack.client.get("/api/v1/dags/plain/runs")).json()["total"] == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_malformed_json_without_a_token_is_401_not_422(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as anonymous:
        response = await anonymous.post(
            "/api/v1/dags/plain/runs",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 401, response.text
    malformed = await stack.client.post(
        "/api/v1/dags/plain/runs",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 422, "with a token, the body is read and found malformed"


async def test_conf_size_is_bounded_wherever_a_conf_comes_in(stack: Stack) -> None:
    stack.write_dag("plain.py", PLAIN)
    await stack.wait_for_dag("plain")

    trigger = await stack.client.post("/api/v1/dags/plain/runs", json={"conf": BIG_CONF})
    assert trigger.status_code == 422, trigger.text
    assert (
        "WEIR_MAX_CONF_BYTES" in trigger.json()["detail"] and "65,536" in trigger.json()["detail"]
    )
    backfill = {"dag_id": "plain", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    refused = await stack.client.post("/api/v1/backfills", json={**backfill, "conf": BIG_CONF})
    assert refused.status_code == 422 and "conf" in refused.text  # its own, lower cap comes first

    secret = "a-long-enough-test-secret"
    created = await stack.client.post(
        "/api/v1/webhooks", json={"dag_id": "plain", "name": "all", "secret": secret}
    )
    assert created.status_code == 201, created.text
    payload = json.dumps(BIG_CONF).encode()
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as sender:
        delivered = await sender.post(
            "/api/v1/webhooks/plain.all",
            content=payload,
            headers={"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"},
        )
    assert delivered.status_code == 422 and "WEIR_MAX_CONF_BYTES" in delivered.text

    async with stack.dashboard() as ui:
        form = await ui.post("/dags/plain/trigger", data={"conf": json.dumps(BIG_CONF)})
    assert form.status_code == 422 and "is too long" in form.text  # its own, lower cap
    assert (await stack.client.get("/api/v1/dags/plain/runs")).json()["total"] == 0

    fits = await stack.client.post("/api/v1/dags/plain/runs", json={"conf": {"blob": "y" * 60_000}})
    assert fits.status_code == 201, fits.text


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_security_headers_on_pages_api_answers_and_static_files(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as browser:
        login = await browser.get("/login")
        static = await browser.get("/static/css/weir.css")
        docs = await browser.get("/docs")
    api = await stack.client.get("/api/v1/dags")
    for answer in (login, api, static, docs):
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    policy = login.headers["content-security-policy"]
    assert (
        "script-src 'self';" in policy
        and "unsafe-inline' " not in policy.split("style-src-attr")[0]
    )
    assert (
        login.headers["cache-control"] == "no-store" and api.headers["cache-control"] == "no-store"
    )
    assert static.headers.get("cache-control") != "no-store", "static files may be cached"
    assert "<script>" not in login.text and " on" + "click=" not in login.text


async def test_a_chatty_task_s_last_words_are_shipped_under_the_limit(tmp_path: Path) -> None:
    """Its 3 MB of output come after the last shipment: the finish report must not carry them
    all, or the API (limit 1 MiB here) refuses the report and the task runs again and again."""
    async with start_stack("sqlite", tmp_path, max_execution_body_bytes=1024 * 1024) as stack:
        stack.write_dag("chatty.py", CHATTY)
        await stack.wait_for_dag("chatty")
        run_id = await stack.trigger("chatty")
        assert await stack.wait_for_run("chatty", run_id, timeout=90) == "success"
        assert (await stack.task_instances("chatty", run_id))["shout"]["attempt"] == 1
        log = await stack.client.get(
            f"/api/v1/dags/chatty/runs/{run_id}/tasks/shout/logs",
            params={"format": "text", "max_bytes": 16 << 20},
        )
        assert "x" * 3_000_000 in log.text


HOARDER = """
    from weir import dag, task

    @dag
    def hoarder():
        @task
        def everything() -> str:
            return "y" * 2_000_000

        everything()

    hoarder()
"""


async def test_a_return_value_over_the_limit_fails_the_task_once_saying_why(
    tmp_path: Path,
) -> None:
    """A report refused as too large (413) cannot succeed by retrying: the attempt fails at once
    with the fix in its error, instead of lapsing and running again."""
    async with start_stack("sqlite", tmp_path, max_execution_body_bytes=1024 * 1024) as stack:
        stack.write_dag("hoarder.py", HOARDER)
        await stack.wait_for_dag("hoarder")
        run_id = await stack.trigger("hoarder")
        assert await stack.wait_for_run("hoarder", run_id, timeout=60) == "failed"
        ti = (await stack.task_instances("hoarder", run_id))["everything"]
        assert ti["attempt"] == 1
        detail = await stack.client.get(f"/api/v1/dags/hoarder/runs/{run_id}/tasks/everything")
        assert "WEIR_MAX_EXECUTION_BODY_BYTES" in detail.text, detail.text


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest ASGI app: the deadline belongs to the server, whatever it serves."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("parser", ["auto", "h11"])
async def test_a_request_head_sent_too_slowly_loses_its_connection(parser: str) -> None:
    port = free_port()
    server = QuietServer(_hello, "127.0.0.1", port, "warning", head_timeout=0.5, parser=parser)
    serving = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return server.started

        await wait_until(started)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n")  # the head never ends
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b"", "the server closes the connection"
        assert time.monotonic() - began >= 0.4
        writer.close()

        status, _, body = await send_head(port, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (status, body) == (200, b"hello"), "a prompt client is served as before"
    finally:
        server.shutdown()
        await serving


def test_the_server_parses_http_with_httptools_when_it_is_installed() -> None:
    """uvicorn's standard extras are a dependency: the C parser, not h11, serves requests."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from weir.http_head_timeout import with_head_timeout

    assert issubclass(with_head_timeout(1.0), HttpToolsProtocol)
    assert not issubclass(with_head_timeout(1.0, parser="h11"), HttpToolsProtocol)
