"""The connections, variables and admin pages over HTTP on both backends: secrets never reach the
HTML, edits keep what the form leaves empty, roles decide what is shown and accepted, every action
is audited with origin ``dashboard``, and a token made in the dashboard works once and is shown
once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from app.auth import Role, ensure_password
from app.db.models import AuditEntry
from app.db.models import Connection as ConnectionRow
from app.db.models import Variable as VariableRow
from app.secrets import SecretBox
from tests.support.stack import Stack, free_port, wait_until

PASSWORD = "pa55-dashboard-never-shown"
EXTRA_SECRET = "xk-extra-dashboard-secret"
VARIABLE_SECRET = "tok-variable-dashboard-secret"
HTMX = {"HX-Request": "true"}
HOOKED = """
    from weir import dag, task

    @dag
    def hooked():
        @task
        def build() -> None: ...

        build()

    hooked()
"""


@asynccontextmanager
async def _signed_in(stack: Stack, username: str, role: Role) -> AsyncIterator[httpx.AsyncClient]:
    """A dashboard client for a new user of ``role`` (cookie + CSRF header, as htmx sends)."""
    password = f"{username}-password"
    async with stack.database.sessions.begin() as session:
        await ensure_password(session, username, role, password, datetime.now(UTC))
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30) as client:
        login = await client.post("/login", data={"username": username, "password": password})
        assert login.status_code == 303, login.text
        found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', (await client.get("/")).text)
        assert found is not None
        client.headers["X-CSRF-Token"] = found.group(1)
        yield client


@asynccontextmanager
async def _http_server() -> AsyncIterator[int]:
    """A tiny HTTP target (an external edge) that answers 204 to anything."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        yield port


async def _connection(stack: Stack, conn_id: str) -> ConnectionRow | None:
    async with stack.database.sessions() as session:
        return await session.get(ConnectionRow, conn_id)


async def _audit(stack: Stack) -> list[tuple[str, str, str]]:
    async with stack.database.sessions() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.target, AuditEntry.origin)
        )
        return [(action, target or "", origin) for action, target, origin in rows]


def _secrets(stack: Stack) -> SecretBox:
    secrets: SecretBox = stack.app.state.weir.secrets
    return secrets


async def test_connections_never_show_secrets_and_edits_keep_them(stack: Stack) -> None:
    async with stack.dashboard() as ui, _http_server() as port:
        created = await ui.post("/connections", headers=HTMX, data={
            "conn_id": "api", "conn_type": "http", "host": "127.0.0.1", "port": str(port),
            "login": "me", "password": PASSWORD, "extra": f'{{"api_key": "{EXTRA_SECRET}"}}',
        })  # fmt: skip
        assert created.status_code == 200, created.text
        assert "api" in created.text and "(set)" in created.text
        pages = [created.text, (await ui.get("/connections")).text,
                 (await ui.get("/connections/api")).text]  # fmt: skip
        for html in pages:
            assert PASSWORD not in html and EXTRA_SECRET not in html
        assert "api_key: ***" in pages[2]

        edit = {"conn_type": "http", "host": "127.0.0.1", "port": str(port), "login": "me",
                "description": "the local API"}  # fmt: skip
        saved = await ui.post("/connections/api", headers=HTMX, data=edit)
        assert saved.status_code == 200 and saved.headers["HX-Redirect"] == "/connections"
        row = await _connection(stack, "api")
        assert row is not None and row.description == "the local API"
        assert row.password_encrypted is not None
        assert _secrets(stack).decrypt(row.password_encrypted) == PASSWORD  # kept
        assert row.extra_encrypted is not None  # kept too

        tested = await ui.post("/connections/api/test", headers=HTMX)
        assert tested.status_code == 200 and "ok" in tested.text and "204" in tested.text

        clear = {**edit, "password_clear": "1", "extra_clear": "1"}
        cleared = await ui.post("/connections/api", headers=HTMX, data=clear)
        assert cleared.status_code == 200
        row = await _connection(stack, "api")
        assert row is not None and row.password_encrypted is None and row.extra_encrypted is None

        deleted = await ui.delete("/connections/api", headers=HTMX)
        assert deleted.status_code == 200 and "No connections yet" in deleted.text
    actions = {(action, origin) for action, _target, origin in await _audit(stack)}
    for action in ("create", "update", "test", "delete"):
        assert (f"connection.{action}", "dashboard") in actions


async def test_bad_connection_forms_are_toasts_never_500(stack: Stack) -> None:
    async with stack.dashboard() as ui:
        for data in (
            {"conn_id": "a/b", "conn_type": "http"},
            {"conn_id": "ok", "conn_type": "http", "host": "a\x00b"},
            {"conn_id": "ok", "conn_type": "http", "port": "70000"},
            {"conn_id": "ok", "conn_type": "http", "extra": "[1, 2]"},
            {"conn_id": "ok", "conn_type": "http", "extra": "{not json"},
            {"conn_type": "http"},
        ):
            refused = await ui.post("/connections", headers=HTMX, data=data)
            assert refused.status_code == 422, (data, refused.text)
            assert refused.headers["HX-Retarget"] == "#toasts"
        postgres = {"conn_id": "pg", "conn_type": "postgres"}
        assert (await ui.post("/connections", headers=HTMX, data=postgres)).status_code == 200
        again = await ui.post("/connections", headers=HTMX, data=postgres)
        assert again.status_code == 409 and "exists already" in again.text
        untestable = await ui.post("/connections/pg/test", headers=HTMX)
        assert untestable.status_code == 422
        assert (await ui.get("/connections/nope")).status_code == 404


async def test_secret_variables_are_masked_and_kept_when_the_field_is_empty(stack: Stack) -> None:
    async with stack.dashboard() as ui:
        secret = await ui.post("/variables", headers=HTMX,
                               data={"key": "deploy_token", "value": VARIABLE_SECRET})  # fmt: skip
        region = {"key": "region", "value": "eu-west-1", "is_secret": "auto"}
        plain = await ui.post("/variables", headers=HTMX, data=region)
        assert secret.status_code == plain.status_code == 200
        listing = (await ui.get("/variables")).text
        edit_page = (await ui.get("/variables/deploy_token")).text
        assert "eu-west-1" in listing and "***" in listing
        assert VARIABLE_SECRET not in listing and VARIABLE_SECRET not in edit_page
        duplicate = await ui.post("/variables", headers=HTMX, data={"key": "region", "value": "x"})
        assert duplicate.status_code == 409

        saved = await ui.post("/variables/deploy_token", headers=HTMX,
                              data={"is_secret": "yes", "description": "for deploys"})  # fmt: skip
        assert saved.status_code == 200
        async with stack.database.sessions() as session:
            row = await session.get(VariableRow, "deploy_token")
        assert row is not None and row.description == "for deploys" and row.is_secret
        assert _secrets(stack).decrypt(row.value_encrypted) == VARIABLE_SECRET

        bad = await ui.post("/variables", headers=HTMX, data={"key": "a b", "value": "x"})
        assert bad.status_code == 422
        assert (await ui.delete("/variables/region", headers=HTMX)).status_code == 200
    assert ("variable.set", "deploy_token", "dashboard") in await _audit(stack)
    assert ("variable.delete", "region", "dashboard") in await _audit(stack)


async def test_roles_decide_what_is_shown_and_accepted(stack: Stack) -> None:
    async with stack.dashboard() as admin:
        await admin.post("/connections", headers=HTMX, data={"conn_id": "pg", "conn_type": "pg"})
    async with _signed_in(stack, "olga", Role.OPERATOR) as operator:
        page = await operator.get("/connections")
        assert page.status_code == 200 and "pg" in page.text
        assert "Delete" not in page.text and "Add a connection" not in page.text
        refused = [
            await operator.post("/connections", headers=HTMX,
                                data={"conn_id": "x", "conn_type": "http"}),
            await operator.delete("/connections/pg", headers=HTMX),
            await operator.post("/variables", headers=HTMX, data={"key": "k", "value": "v"}),
            await operator.get("/admin/users"),
            await operator.get("/admin/audit"),
        ]  # fmt: skip
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert (await operator.get("/variables")).status_code == 200
    async with _signed_in(stack, "vic", Role.VIEWER) as viewer:
        assert (await viewer.get("/connections")).status_code == 403
        assert (await viewer.get("/variables")).status_code == 403
    assert await _connection(stack, "pg") is not None


async def test_users_and_tokens_through_the_admin_pages(stack: Stack) -> None:
    async with stack.dashboard() as ui:
        created = await ui.post("/admin/users", headers=HTMX, data={
            "username": "alice", "role": "viewer", "password": "alice password"})  # fmt: skip
        assert created.status_code == 200 and 'data-username="alice"' in created.text
        short = await ui.post("/admin/users", headers=HTMX,
                              data={"username": "bob", "password": "short"})  # fmt: skip
        assert short.status_code == 422
        promoted = await ui.post("/admin/users/alice/role", headers=HTMX, data={"role": "operator"})
        assert promoted.status_code == 200
        last_admin = await ui.post("/admin/users/admin/disable", headers=HTMX)
        assert last_admin.status_code == 409 and "last enabled admin" in last_admin.text
        reset = await ui.post("/admin/users/alice/password", headers=HTMX,
                              data={"password": "second password"})  # fmt: skip
        assert reset.status_code == 200

        new_token = {"username": "alice", "name": "ci", "expires_in_days": "30"}
        made = await ui.post("/admin/tokens", headers=HTMX, data=new_token)
        assert made.status_code == 200, made.text
        found = re.search(r'value="(weir_[^"]+)"', made.text)
        assert found is not None
        token = found.group(1)
        api = {"Authorization": f"Bearer {token}"}
        me = await stack.client.get("/api/v1/me", headers=api)
        assert me.json()["username"] == "alice" and me.json()["role"] == "operator"
        listing = (await ui.get("/admin/tokens")).text
        assert token not in listing and ">ci<" in listing
        token_id = re.search(r'data-token-id="(\d+)"', listing)
        assert token_id is not None
        revoked = await ui.delete(f"/admin/tokens/{token_id.group(1)}", headers=HTMX)
        assert revoked.status_code == 200 and "revoked" in revoked.text
        assert (await stack.client.get("/api/v1/me", headers=api)).status_code == 401

        disabled = await ui.post("/admin/users/alice/disable", headers=HTMX)
        assert disabled.status_code == 200 and "disabled" in disabled.text
    audit = [(a, t, o) for a, t, o in await _audit(stack) if o == "dashboard"]
    for action in ("user.login", "user.create", "user.update", "token.create", "token.revoke"):
        assert action in {a for a, _t, _o in audit}, audit


async def test_audit_page_filters_and_shows_origin(stack: Stack) -> None:
    await stack.client.put("/api/v1/variables/region", json={"value": "eu"})
    async with stack.dashboard() as ui:
        await ui.post("/variables", headers=HTMX, data={"key": "zone", "value": "a"})
        everything = (await ui.get("/admin/audit")).text
        assert "user.login" in everything
        assert 'data-action="variable.set" data-origin="api"' in everything
        assert 'data-action="variable.set" data-origin="dashboard"' in everything
        only_api = await ui.get("/admin/audit", params={"action": "variable.", "actor": "admin"})
        assert "user.login" not in only_api.text and "variable.set" in only_api.text
        future = await ui.get("/admin/audit", params={"since": "2999-01-01T00:00"})
        assert "No entries match" in future.text
        hostile = await ui.get("/admin/audit", params={"since": "not a date", "actor": "\x01",
                                                       "offset": "-3"})  # fmt: skip
        assert hostile.status_code == 200
        # A NUL is refused before any route (issue 13 item 9).
        assert (await ui.get("/admin/audit", params={"actor": "\x00"})).status_code == 422


async def test_import_errors_and_deliveries_pages(stack: Stack) -> None:
    stack.write_dag("broken.py", "raise RuntimeError('this file is broken on purpose')\n")
    async with stack.dashboard() as ui:

        async def shown() -> bool:
            return "broken on purpose" in (await ui.get("/admin/import-errors")).text

        await wait_until(shown, timeout=30)
        deliveries = await ui.get("/admin/webhooks", params={"verdict": "bad_signature",
                                                             "hook": "x\x01"})  # fmt: skip
        assert deliveries.status_code == 200 and "No deliveries match" in deliveries.text
        home = await ui.get("/admin", follow_redirects=True)
        assert home.status_code == 200 and "Users and roles" in home.text


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` of a server-sent event stream, one pair per event."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line[5:])
        elif not line and data:
            yield event, "\n".join(data)
            event, data = "", []


async def test_a_delivery_appears_live_on_the_deliveries_page(stack: Stack) -> None:
    stack.write_dag("hooked.py", HOOKED)
    await stack.wait_for_dag("hooked")
    created = await stack.client.post(
        "/api/v1/webhooks", json={"dag_id": "hooked", "name": "push", "signature": "github"}
    )
    assert created.status_code == 201, created.text
    async with stack.dashboard() as ui:
        page = (await ui.get("/admin/webhooks")).text
        assert "No deliveries" in page
        found = re.search(r'sse-connect="([^"]+)"', page)
        assert found is not None
        async with ui.stream("GET", found.group(1).replace("&amp;", "&")) as stream:
            events = _events(stream)
            # The page is current, so the stream sends nothing until something changes.
            forged = await stack.client.post(
                "/api/v1/webhooks/hooked.push",
                content=b'{"ref": "main"}',
                headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
            )
            assert forged.status_code == 401
            event, html = await asyncio.wait_for(anext(events), timeout=10)
    assert event == "deliveries" and "hooked.push" in html and "bad signature" in html
