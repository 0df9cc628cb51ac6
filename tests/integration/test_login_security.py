"""Sign-ins are throttled per user name and per address; logging out, a new password and
disabling the user end dashboard sessions (a copied cookie too); a token made with a token
never outlives it."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx

from app.auth import Role, ensure_password
from app.login_throttle import MAX_ATTEMPTS_PER_ADDRESS, MAX_ATTEMPTS_PER_USER
from tests.support.stack import Stack

PASSWORD = "the-right-password"


async def _user(stack: Stack, username: str) -> None:
    async with stack.database.sessions.begin() as session:
        await ensure_password(session, username, Role.VIEWER, PASSWORD, datetime.now(UTC))


async def _log_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/login", data={"username": username, "password": password})


async def test_wrong_passwords_throttle_the_user_name_even_for_the_right_one(stack: Stack) -> None:
    await _user(stack, "alice")
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30) as client:
        for _ in range(MAX_ATTEMPTS_PER_USER):
            assert (await _log_in(client, "alice", "wrong")).status_code == 401
        throttled = await _log_in(client, "alice", PASSWORD)
        assert throttled.status_code == 429, throttled.text
        assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
        assert "Too many sign-in attempts for this user" in throttled.text
        assert "weir_session" not in throttled.cookies
        # Another user from the same address is not locked out by alice's attempts.
        await _user(stack, "bob")
        assert (await _log_in(client, "bob", PASSWORD)).status_code == 303


async def test_a_right_password_clears_the_count_of_its_user(stack: Stack) -> None:
    await _user(stack, "carol")
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30) as client:
        for _ in range(2):
            for _ in range(MAX_ATTEMPTS_PER_USER - 1):
                assert (await _log_in(client, "carol", "wrong")).status_code == 401
            assert (await _log_in(client, "carol", PASSWORD)).status_code == 303


async def test_many_user_names_from_one_address_are_throttled(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=60) as client:
        for batch in range(0, MAX_ATTEMPTS_PER_ADDRESS, 5):
            answers = await asyncio.gather(
                *(_log_in(client, f"nobody{i}", "guess") for i in range(batch, batch + 5))
            )
            assert [a.status_code for a in answers] == [401] * 5, answers[0].text
        throttled = await _log_in(client, "somebody-else", "guess")
        assert throttled.status_code == 429, throttled.text
        assert "for your address" in throttled.text and "Retry-After" in throttled.headers


async def _session(stack: Stack, username: str, clients: AsyncExitStack) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30)
    await clients.enter_async_context(client)
    assert (await _log_in(client, username, PASSWORD)).status_code == 303
    page = (await client.get("/")).text
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page)
    assert found is not None, page
    client.headers["X-CSRF-Token"] = found.group(1)
    return client


async def _is_signed_in(stack: Stack, cookie: str) -> bool:
    cookies = {"weir_session": cookie}
    async with httpx.AsyncClient(base_url=stack.settings.api_url, cookies=cookies) as fresh:
        response = await fresh.get("/")
    assert response.status_code in (200, 303, 307), response.text
    return response.status_code == 200


async def test_logout_and_password_change_and_disabling_end_sessions(stack: Stack) -> None:
    async with AsyncExitStack() as clients:
        await _check_sessions_end(stack, clients)


async def _check_sessions_end(stack: Stack, clients: AsyncExitStack) -> None:
    await _user(stack, "dave")
    browser = await _session(stack, "dave", clients)
    other_browser = await _session(stack, "dave", clients)
    copied = browser.cookies["weir_session"]
    assert await _is_signed_in(stack, copied)
    assert (await browser.post("/logout")).status_code == 303
    assert not await _is_signed_in(stack, copied)  # a copy of the cookie is refused
    assert not await _is_signed_in(stack, other_browser.cookies["weir_session"])

    for change in ({"password": "a-new-password-1"}, {"disabled": True}):
        if change.get("disabled"):
            await _user(stack, "dave")  # back to PASSWORD
        browser = await _session(stack, "dave", clients)
        cookie = browser.cookies["weir_session"]
        assert await _is_signed_in(stack, cookie)
        answer = await stack.client.patch("/api/v1/users/dave", json=change)
        assert answer.status_code == 200, answer.text
        if change.get("disabled"):  # enabled again: the old session stays ended
            enabled = await stack.client.patch("/api/v1/users/dave", json={"disabled": False})
            assert enabled.status_code == 200, enabled.text
        assert not await _is_signed_in(stack, cookie), change


async def test_a_token_made_with_a_token_never_outlives_it(stack: Stack) -> None:
    parent = await stack.client.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 1})
    assert parent.status_code == 201, parent.text
    expiry = parent.json()["expires_at"]
    headers = {"Authorization": f"Bearer {parent.json()['token']}"}
    async with httpx.AsyncClient(base_url=stack.settings.api_url, headers=headers) as ci:
        inherited = await ci.post("/api/v1/tokens", json={"name": "child"})
        assert inherited.status_code == 201, inherited.text
        assert inherited.json()["expires_at"] == expiry
        longer = await ci.post("/api/v1/tokens", json={"name": "child", "expires_in_days": 30})
        assert longer.status_code == 422, longer.text
        assert "cannot outlive it" in longer.json()["detail"]
        forever = await ci.post("/api/v1/tokens", json={"name": "child", "username": "admin"})
        assert forever.json()["expires_at"] == expiry
