"""``weir connections`` and ``weir variables`` in real subprocesses against a running Weir: they
go through the REST API, take secrets from standard input, and never print them back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.processes import cli_env, run_cli
from tests.support.stack import Stack, start_stack

PASSWORD = "stdin-pa55word-xyz"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack("sqlite", tmp_path, workers=0) as stack:
        yield stack


async def weir(stack: Stack, *args: str, stdin: str = "") -> tuple[int, str]:
    """Run ``python -m weir ARGS`` against the stack's API; its exit code and output."""
    env = cli_env(api_url=stack.settings.api_url, token=stack.token)
    return await run_cli(*args, env=env, stdin=stdin, timeout=60)


async def test_connections_add_list_get_delete(api: Stack) -> None:
    code, out = await weir(
        api, "connections", "add", "warehouse", "postgresql://etl@db.example.com:5432/analytics"
        "?sslmode=require", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0 and "with a password" in out, out
    stored = (await api.client.get("/api/v1/connections/warehouse")).json()
    assert stored["host"] == "db.example.com" and stored["port"] == 5432
    assert stored["login"] == "etl" and stored["schema"] == "analytics"
    assert stored["password_set"] is True and stored["extra"] == {"sslmode": "***"}

    code, out = await weir(api, "connections", "add", "api", "--conn-type", "http",
                           "--host", "example.com", "--extra", '{"timeout": 5}')  # fmt: skip
    assert code == 0, out
    code, listed = await weir(api, "connections", "list")
    assert code == 0 and "warehouse" in listed and "api" in listed
    code, shown = await weir(api, "connections", "get", "warehouse")
    assert code == 0 and '"password_set": true' in shown
    assert PASSWORD not in listed + shown

    code, out = await weir(api, "connections", "add", "warehouse", "--conn-type", "x")
    assert code == 1 and "exists already" in out
    code, out = await weir(api, "connections", "delete", "warehouse")
    assert code == 0
    code, out = await weir(api, "connections", "get", "warehouse")
    assert code == 1 and "404" in out and "Traceback" not in out


async def test_a_bad_uri_is_refused_with_an_example(api: Stack) -> None:
    code, out = await weir(api, "connections", "add", "x", "not a uri")
    assert code == 2 and "type://login:password@host" in out and "Traceback" not in out


async def test_variables_set_get_list_delete(api: Stack) -> None:
    assert (await weir(api, "variables", "set", "region", "eu-west-1"))[0] == 0
    code, out = await weir(api, "variables", "set", "deploy_token", stdin="tok-from-stdin\n")
    assert code == 0 and "secret variable" in out
    assert (await weir(api, "variables", "get", "region")) == (0, "eu-west-1\n")
    assert (await weir(api, "variables", "get", "deploy_token")) == (0, "***\n")
    code, listed = await weir(api, "variables", "list")
    assert code == 0 and "eu-west-1" in listed and "tok-from-stdin" not in listed
    assert (await weir(api, "variables", "delete", "region"))[0] == 0
    code, out = await weir(api, "variables", "get", "region")
    assert code == 1 and "does not exist" in out
