"""Connections, users, tokens and the audit log in a real browser: a connection's password never
reaches the browser (page or any response it received), an edit that leaves the password empty
keeps it, the test button reaches a real HTTP server, a token is shown once, and the audit page
lists it all with origin dashboard. Screenshots: light, dark, and a phone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, Route, expect

from tests.browser.conftest import new_page, screenshot, sign_in
from tests.support.stack import Stack, free_port

PASSWORD = "browser-pa55-never-in-the-page"


@asynccontextmanager
async def _http_server() -> AsyncIterator[int]:
    """The connection's target: a tiny HTTP server (an external edge) answering 200."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        yield port


async def _record_bodies(page: Page) -> list[bytes]:
    """Every response body the page receives, read on the way in (live SSE streams pass
    through: they never end, and what they carry is swapped into the page, checked whole)."""
    bodies: list[bytes] = []

    async def keep(route: Route) -> None:
        if "/ui/live/" in route.request.url:
            await route.continue_()
            return
        response = await route.fetch(max_redirects=0)
        bodies.append(await response.body())
        await route.fulfill(response=response)

    await page.route("**/*", keep)
    return bodies


async def _add_connection(page: Page, port: int) -> None:
    await page.goto("/connections")
    await page.locator("#conn-form summary").click()
    await page.get_by_label("Connection id").fill("local_api")
    await page.get_by_label("Type").fill("http")
    await page.get_by_label("Host or URL").fill("127.0.0.1")
    await page.get_by_label("Port").fill(str(port))
    await page.get_by_label("Login").fill("robot")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Extra (JSON object)").fill('{"region": "eu"}')
    await page.get_by_role("button", name="Add connection").click()
    await expect(page.locator("#conn-table")).to_contain_text("local_api")


async def test_connection_secret_stays_on_the_server(browser: Browser, ui_stack: Stack) -> None:
    page = await new_page(browser, ui_stack)
    bodies = await _record_bodies(page)
    await sign_in(page, ui_stack)
    async with _http_server() as port:
        await _add_connection(page, port)
        row = page.locator('tr[data-conn-id="local_api"]')
        await expect(row).to_contain_text("(set)")
        await screenshot(page, "connections")

        await row.get_by_role("link", name="Edit connection local_api").click()
        await expect(page.get_by_role("heading", name="Edit connection local_api")).to_be_visible()
        await expect(page.get_by_label("Replace password")).to_have_value("")
        await screenshot(page, "connection-edit")
        await page.get_by_label("Description").fill("the local API")
        await page.get_by_role("button", name="Save").click()
        await expect(page).to_have_url("/connections")
        await expect(row).to_contain_text("the local API")
        await expect(row).to_contain_text("(set)")

        await row.get_by_role("button", name="Test connection local_api").click()
        await expect(row.locator(".conn-test")).to_contain_text("ok")
        await expect(row.locator(".conn-test")).to_contain_text("200 OK")
        await screenshot(page, "connections-tested")

    assert PASSWORD not in await page.content()
    assert len(bodies) > 5
    assert not [body for body in bodies if PASSWORD.encode() in body]


async def test_users_tokens_and_the_audit_log(browser: Browser, ui_stack: Stack) -> None:
    page = await new_page(browser, ui_stack)
    await sign_in(page, ui_stack)
    await page.goto("/admin")
    await expect(page).to_have_url("/admin/users")
    await page.get_by_text("Create a user").click()
    form = page.locator("form[hx-post='/admin/users']")
    await form.get_by_label("Username").fill("alice")
    await form.get_by_label("Role").select_option("operator")
    await form.get_by_label("Password").fill("alice password")
    await form.get_by_role("button", name="Create user").click()
    await expect(page.locator('tr[data-username="alice"]')).to_contain_text("enabled")
    await screenshot(page, "admin-users")

    await page.get_by_role("link", name="Tokens").click()
    form = page.locator("form[hx-post='/admin/tokens']")
    await form.locator("select[name=username]").select_option("alice")
    await form.get_by_label("Name").fill("ci")
    await form.get_by_role("button", name="Create token").click()
    value = page.get_by_label("New token value")
    await expect(page.locator(".token-created")).to_contain_text("only time")
    token = await value.input_value()
    assert token.startswith("weir_")
    await expect(page.locator("#admin-tokens")).to_contain_text("alice")
    await screenshot(page, "admin-tokens")
    await page.reload()
    assert token not in await page.content()

    await page.get_by_role("link", name="Audit log").click()
    table = page.locator("#audit-table")
    for action in ("user.login", "user.create", "token.create"):
        entry = table.locator(f'tr[data-action="{action}"][data-origin="dashboard"]')
        await expect(entry.first).to_be_visible()
    await screenshot(page, "admin-audit")

    await ui_stack.client.put("/api/v1/variables/region", json={"value": "eu-west-1"})
    await ui_stack.client.put("/api/v1/variables/deploy_token", json={"value": "tok-123"})
    dark = await new_page(browser, ui_stack, dark=True)
    await sign_in(dark, ui_stack)
    await dark.goto("/admin/audit")
    await expect(dark.locator("#audit-table")).to_contain_text("token.create")
    await screenshot(dark, "admin-audit-dark")
    await dark.goto("/admin/import-errors")
    await screenshot(dark, "admin-import-errors-dark")
    await dark.goto("/admin/webhooks")
    await screenshot(dark, "admin-webhooks-dark")
    await dark.goto("/variables")
    await screenshot(dark, "variables-dark")

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto("/admin/users")
    await screenshot(page, "admin-users-phone")
    await page.goto("/variables")
    await expect(page.locator("#var-table")).to_contain_text("***")
    await screenshot(page, "variables-phone")
