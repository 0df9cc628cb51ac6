"""Secrets stay out of places the people who may not see them can read: a task's stored return
value (shown to viewers) and the error text of a failed database statement (logged on stderr)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from app.db.engine import Database
from app.db.models import User
from tests.support.stack import Stack

TOKEN = "variable-token-value-42"

RETURNS_SECRET_DAG = """
    from weir import dag, task
    from weir.resources import get_variable

    @dag()
    def leaks_secret():
        @task
        def fetch() -> dict:
            token = get_variable("deploy_token")
            return {"token": token, "url": f"https://x:{token}@host", token: [token, 1]}

        fetch()

    leaks_secret()
"""


async def test_a_returned_secret_is_stored_masked(stack: Stack) -> None:
    await stack.client.put("/api/v1/variables/deploy_token", json={"value": TOKEN})
    stack.write_dag("leaks_secret.py", RETURNS_SECRET_DAG)
    await stack.wait_for_dag("leaks_secret")
    run_id = await stack.trigger("leaks_secret")
    assert await stack.wait_for_run("leaks_secret", run_id) == "success"

    response = await stack.client.get(f"/api/v1/dags/leaks_secret/runs/{run_id}/tasks/fetch/xcom")
    assert response.status_code == 200, response.text
    assert TOKEN not in response.text
    assert response.json()["value"] == {
        "token": "***",
        "url": "https://x:***@host",
        "***": ["***", 1],
    }


async def test_a_failed_statement_does_not_show_its_parameters(database: Database) -> None:
    now = datetime.now(UTC)
    secret = "argon2-hash-that-must-not-be-logged"
    async with database.sessions.begin() as session:
        session.add(User(username="alice", role="viewer", created_at=now))
    with pytest.raises(IntegrityError) as raised:
        async with database.sessions.begin() as session:
            session.add(User(username="alice", role="viewer", password_hash=secret, created_at=now))
    assert secret not in str(raised.value)
    assert "hidden" in str(raised.value)
