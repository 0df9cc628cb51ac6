"""Users, tokens and the audit log over the real API, on both backends: tokens shown once and
listed without secrets, expiry, revocation, disabled users, the last enabled admin, dashboard
logins (``verify_login``) and an audit entry for every change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from app.auth import Role, authenticate, ensure_bootstrap_admin, verify_login
from app.db.engine import create_database
from app.db.models import ApiToken, User
from tests.support.clock import MovableClock
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.stack import Stack, start_stack

BOOTSTRAP_PASSWORD = "bootstrap secret 1"


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 3, 1, 12, tzinfo=UTC))


@pytest.fixture
async def weir(backend: str, tmp_path: Path, clock: MovableClock) -> AsyncIterator[Stack]:
    """A stack on a clock the test moves, whose admin also has a bootstrap password."""
    async with start_stack(
        backend, tmp_path, workers=0, clock=clock, bootstrap_admin_password=BOOTSTRAP_PASSWORD
    ) as running:
        yield running


def client_for(stack: Stack, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def create_user(stack: Stack, username: str, role: str, **extra: Any) -> dict[str, Any]:
    response = await stack.client.post(
        "/api/v1/users", json={"username": username, "role": role, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def token_of(stack: Stack, username: str, **extra: Any) -> dict[str, Any]:
    """An admin-made token of ``username`` (the 201 answer, with the clear value)."""
    response = await stack.client.post(
        "/api/v1/tokens", json={"name": f"{username}-token", "username": username, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def audit(stack: Stack, action: str) -> list[dict[str, Any]]:
    response = await stack.client.get("/api/v1/audit", params={"action": action})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_users_get_tokens_that_carry_their_role_and_are_listed_without_secrets(
    weir: Stack,
) -> None:
    created = await create_user(weir, "alice", "operator", password="correct horse")
    assert created == {**created, "username": "alice", "role": "operator", "has_password": True}
    assert "password" not in created and "password_hash" not in created
    again = await weir.client.post("/api/v1/users", json={"username": "alice"})
    assert again.status_code == 409

    issued = await token_of(weir, "alice", expires_in_days=30)
    assert issued["token"].startswith("weir_") and issued["username"] == "alice"
    async with client_for(weir, issued["token"]) as alice:
        me = (await alice.get("/api/v1/me")).json()
        assert (me["username"], me["role"], me["token_id"]) == ("alice", "operator", issued["id"])
        own = await alice.post("/api/v1/tokens", json={"name": "laptop"})
        for_admin = await alice.post("/api/v1/tokens", json={"name": "x", "username": "admin"})
        assert own.status_code == 201 and for_admin.status_code == 403
        listing = await alice.get("/api/v1/tokens")
        users = await alice.get("/api/v1/users")
        assert users.status_code == 403  # only admins manage users
    assert listing.json()["total"] == 2
    assert {t["name"] for t in listing.json()["tokens"]} == {"alice-token", "laptop"}
    for secret in (issued["token"], own.json()["token"]):
        assert secret not in listing.text
    assert all(set(t) == set(listing.json()["tokens"][0]) for t in listing.json()["tokens"])
    assert not {"token", "token_hash"} & set(listing.json()["tokens"][0])

    everyone = (await weir.client.get("/api/v1/tokens")).json()
    assert {t["username"] for t in everyone["tokens"]} == {"admin", "alice"}
    only_alice = (await weir.client.get("/api/v1/tokens", params={"username": "alice"})).json()
    assert only_alice["total"] == 2
    created_tokens = await audit(weir, "token.create")
    assert [(e["actor"], e["target"]) for e in created_tokens] == [
        ("alice", "alice"),
        ("admin", "alice"),
    ]  # newest first
    assert issued["token"] not in str(created_tokens)
    assert [e["target"] for e in await audit(weir, "user.")] == ["alice"]


async def test_revoked_and_expired_tokens_stop_working_at_once(
    weir: Stack, clock: MovableClock
) -> None:
    await create_user(weir, "bob", "viewer")
    lasting = await token_of(weir, "bob")
    short = await token_of(weir, "bob", expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    past = (clock.now() - timedelta(seconds=1)).isoformat()
    refused = [
        await weir.client.post("/api/v1/tokens", json={"name": "x", "expires_at": past}),
        await weir.client.post(
            "/api/v1/tokens", json={"name": "x", "expires_at": past, "expires_in_days": 1}
        ),
        await weir.client.post("/api/v1/tokens", json={"name": "x", "expires_in_days": 0}),
        await weir.client.post("/api/v1/tokens", json={"name": "x\x00"}),
    ]
    assert [r.status_code for r in refused] == [422] * 4

    async with client_for(weir, lasting["token"]) as bob, client_for(weir, short["token"]) as soon:
        assert (await soon.get("/api/v1/me")).status_code == 200
        clock.advance(timedelta(hours=2))
        expired = await soon.get("/api/v1/me")
        assert expired.status_code == 401
        assert expired.headers["content-type"] == "application/problem+json"

        # bob may not revoke the admin's token, and cannot even tell it exists
        admin_token_id = (await weir.client.get("/api/v1/me")).json()["token_id"]
        assert (await bob.delete(f"/api/v1/tokens/{admin_token_id}")).status_code == 404
        assert (await bob.delete(f"/api/v1/tokens/{lasting['id']}")).status_code == 204
        assert (await bob.get("/api/v1/me")).status_code == 401
    assert (await weir.client.delete(f"/api/v1/tokens/{lasting['id']}")).status_code == 204
    revoked = await audit(weir, "token.revoke")
    assert [(e["actor"], e["target"]) for e in revoked] == [("bob", "bob")]  # once, not twice
    listed = (await weir.client.get("/api/v1/tokens", params={"username": "bob"})).json()
    assert {t["id"]: t["is_active"] for t in listed["tokens"]} == {
        lasting["id"]: False,
        short["id"]: False,
    }
    for bad in ("nope", "99999999999999999999999", "-1"):
        assert (await weir.client.delete(f"/api/v1/tokens/{bad}")).status_code == 404


async def test_a_disabled_user_is_refused_until_enabled_again(weir: Stack) -> None:
    await create_user(weir, "carol", "operator")
    issued = await token_of(weir, "carol")
    async with client_for(weir, issued["token"]) as carol:
        disabled = await weir.client.patch("/api/v1/users/carol", json={"disabled": True})
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        assert (await carol.get("/api/v1/me")).status_code == 401
        more = await weir.client.post("/api/v1/tokens", json={"name": "x", "username": "carol"})
        assert more.status_code == 409
        await weir.client.patch("/api/v1/users/carol", json={"disabled": False, "role": "viewer"})
        me = await carol.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["role"] == "viewer"  # the role of now
    changes = [e["detail"] for e in await audit(weir, "user.update")]
    assert changes == [
        {"disabled": False, "role": {"from": "operator", "to": "viewer"}},
        {"disabled": True},
    ]


async def test_the_last_enabled_admin_cannot_be_removed(weir: Stack) -> None:
    for change in ({"role": "operator"}, {"disabled": True}):
        refused = await weir.client.patch("/api/v1/users/admin", json=change)
        assert refused.status_code == 409, refused.text
        assert "last enabled admin" in refused.json()["detail"]
    assert (await weir.client.delete("/api/v1/users/admin")).status_code == 409

    await create_user(weir, "dave", "admin")
    await create_user(weir, "erin", "admin")
    dave = client_for(weir, (await token_of(weir, "dave"))["token"])
    erin = client_for(weir, (await token_of(weir, "erin"))["token"])
    async with dave, erin:
        assert (await dave.delete("/api/v1/users/admin")).status_code == 204
        assert (await weir.client.get("/api/v1/me")).status_code == 401  # its tokens went too
        # Two admins demote each other at the same moment: one must stay admin. The loser gets
        # 409, or 403 if its own demotion committed before its request was authenticated.
        answers = await asyncio.gather(
            dave.patch("/api/v1/users/erin", json={"role": "viewer"}),
            erin.patch("/api/v1/users/dave", json={"role": "viewer"}),
        )
        codes = sorted(a.status_code for a in answers)
        assert codes in ([200, 403], [200, 409]), [a.text for a in answers]
        assert len(await enabled_users(weir, "admin")) == 1
        winner = dave if answers[0].status_code == 200 else erin
        deleted = await winner.get("/api/v1/audit", params={"action": "user.delete"})
    assert [e["target"] for e in deleted.json()["entries"]] == ["admin"]


async def enabled_users(stack: Stack, role: str) -> list[str]:
    async with stack.database.sessions() as session:
        names = await session.scalars(
            select(User.username).where(User.role == role, User.disabled_at.is_(None))
        )
        return list(names)


async def test_dashboard_logins_check_the_argon2_password(weir: Stack, clock: MovableClock) -> None:
    await create_user(weir, "frank", "operator", password="first password")
    await create_user(weir, "robot", "viewer")  # a service account: no password, no login
    now = clock.now()
    async with weir.database.sessions.begin() as session:
        frank = await verify_login(session, "frank", "first password", now)
        assert frank is not None and (frank.username, frank.role) == ("frank", Role.OPERATOR)
        assert await verify_login(session, "frank", "wrong password", now) is None
        assert await verify_login(session, "nobody", "first password", now) is None
        assert await verify_login(session, "robot", "", now) is None
        admin = await verify_login(session, "admin", BOOTSTRAP_PASSWORD, now)
        assert admin is not None and admin.role == Role.ADMIN

    changed = await weir.client.patch("/api/v1/users/frank", json={"password": "second password"})
    assert changed.status_code == 200
    assert (await audit(weir, "user.update"))[0]["detail"] == {"password": "changed"}
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("second password")
    async with weir.database.sessions.begin() as session:
        assert await verify_login(session, "frank", "first password", now) is None
        await session.execute(
            update(User).where(User.username == "frank").values(password_hash=weak)
        )
    async with weir.database.sessions.begin() as session:
        assert await verify_login(session, "frank", "second password", now) is not None
    async with weir.database.sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.username == "frank"))
    assert stored is not None and stored != weak and stored.startswith("$argon2id$")  # rehashed

    await weir.client.patch("/api/v1/users/frank", json={"disabled": True})
    async with weir.database.sessions() as session:
        assert await verify_login(session, "frank", "second password", now) is None


@pytest.mark.postgres
async def test_replicas_starting_together_bootstrap_the_admin_once() -> None:
    """Several ``weir api`` replicas start at once in a deployment: none may fail its start on
    a duplicate ``admin`` (the first takes the lock and creates it, the others then find it)."""
    url = await create_postgres_database()
    databases = [create_database(url) for _ in range(4)]
    try:
        now = datetime.now(UTC)
        await asyncio.gather(
            *(
                ensure_bootstrap_admin(db, "weir_same_token", "same-password", now)
                for db in databases
            )
        )
        async with databases[0].sessions() as session:
            users = (await session.scalars(select(User).where(User.username == "admin"))).all()
            tokens = (await session.scalars(select(ApiToken))).all()
            assert len(users) == 1 and len(tokens) == 1
            assert await authenticate(session, "weir_same_token", now) is not None
    finally:
        for db in databases:
            await db.dispose()
        await drop_postgres_database(url)
