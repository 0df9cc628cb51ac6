"""Every operation of ``/api/v1`` enforces the role its OpenAPI document declares.

The test derives everything from the served ``/openapi.json``, so an operation added tomorrow is
checked tomorrow: it must declare ``x-weir-role`` (or be on the short public list below), refuse
a request without a valid token (401, problem+json), refuse each lower role (403), and let its
own role through (any answer but 401 and 403).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth import Role, create_token
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.postgres

# Operations anyone may call: each has its own reason not to need a token.
PUBLIC = {
    ("get", "/api/v1/version"),  # what clients check before anything else
    ("post", "/api/v1/webhooks/{hook_id}"),  # signed with the webhook's secret (HMAC) instead
}
ROLES = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]  # lowest first
METHODS = {"get", "post", "put", "patch", "delete"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack("postgres", tmp_path, workers=0) as running:
        yield running


async def _role_tokens(stack: Stack) -> dict[Role, str]:
    async with stack.database.sessions.begin() as session:
        now = datetime.now(UTC)
        viewer = await create_token(session, "acl-viewer", Role.VIEWER, now)
        operator = await create_token(session, "acl-operator", Role.OPERATOR, now)
    return {Role.VIEWER: viewer, Role.OPERATOR: operator, Role.ADMIN: stack.token}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _url(path: str) -> str:
    """The path with every parameter filled by a harmless value that matches common patterns."""
    return re.sub(r"\{[^}]+\}", "acl-dummy", path)


async def _call(
    client: httpx.AsyncClient, method: str, path: str, operation: dict[str, Any], token: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = {"json": {}} if "requestBody" in operation else {}
    return await client.request(method, _url(path), headers=headers, **body)


async def test_the_document_declares_the_bearer_scheme_and_a_role_per_operation(
    stack: Stack,
) -> None:
    document = (await stack.client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= next(iter(schemes.values())).items()
    operations = _operations(document)
    declared = {(m, p) for m, p, _ in operations}
    assert declared >= PUBLIC, f"public operations missing from the document: {PUBLIC - declared}"

    for method, path, operation in operations:
        name = f"{method.upper()} {path}"
        if (method, path) in PUBLIC or not path.startswith("/api/v1/"):
            assert "x-weir-role" not in operation, name
            assert operation.get("security", []) == [], name  # public, or another credential
            continue
        assert operation.get("x-weir-role") in {r.value for r in ROLES}, f"{name} declares no role"
        assert operation["security"] == [{next(iter(schemes)): []}], name


async def test_every_operation_enforces_its_declared_role(stack: Stack) -> None:
    document = (await stack.client.get("/openapi.json")).json()
    tokens = await _role_tokens(stack)
    checked = 0
    async with httpx.AsyncClient(base_url=stack.settings.api_url, timeout=30) as client:
        for method, path, operation in _operations(document):
            if "x-weir-role" not in operation:
                continue  # the test above proves only public and non-/api/v1 ones lack it
            name = f"{method.upper()} {path}"
            needed = Role(operation["x-weir-role"])
            for token in (None, "weir_not_a_real_token"):
                anonymous = await _call(client, method, path, operation, token)
                assert anonymous.status_code == 401, (name, token, anonymous.text)
                assert anonymous.headers["content-type"] == PROBLEM, name
                assert anonymous.headers["www-authenticate"] == "Bearer", name
            for role in ROLES[: ROLES.index(needed)]:
                too_low = await _call(client, method, path, operation, tokens[role])
                assert too_low.status_code == 403, (name, role, too_low.text)
                assert too_low.headers["content-type"] == PROBLEM, name
            allowed = await _call(client, method, path, operation, tokens[needed])
            assert allowed.status_code not in (401, 403), (name, needed, allowed.text)
            assert allowed.status_code < 500, (name, allowed.text)
            checked += 1
    assert checked >= 20  # the API has at least the operations of issues 1-4
