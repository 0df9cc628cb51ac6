"""Webhook triggers end to end, on both backends: signed calls start runs with the mapped conf,
everything else is refused and recorded, replays start nothing, and declared hooks follow their
DAG file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import select

from app.auth import Role, create_token
from app.db.models import AuditEntry
from tests.support.stack import Stack, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dags" / "webhook_orders.py"

ORDERS = """
    from weir import Param, dag, get_current_context, task

    @dag(params={"order_id": Param(type="integer"), "branch": Param("main", type="string")})
    def orders():
        @task
        def show() -> None:
            print("conf:", sorted(get_current_context().conf.items()))

        show()

    orders()
"""

DECLARED = """
    from weir import Webhook, dag, get_current_context, task

    @dag(triggers=[{triggers}])
    def declared():
        @task
        def show() -> None:
            print("conf:", sorted(get_current_context().conf.items()))

        show()

    declared()
"""
PUSH_HOOK = 'Webhook("push", conf={"branch": "/ref"}, filters={"/ref": "refs/heads/main"})'


def github_headers(secret: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def timestamped_headers(
    secret: str, body: bytes, timestamp: int, delivery: str | None = None
) -> dict[str, str]:
    delivery = delivery or str(uuid.uuid4())
    signed = f"{delivery}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return {
        "X-Weir-Delivery": delivery,
        "X-Weir-Timestamp": str(timestamp),
        "X-Weir-Signature": f"sha256={digest}",
        "Content-Type": "application/json",
    }


async def create_hook(stack: Stack, **fields: Any) -> dict[str, Any]:
    response = await stack.client.post("/api/v1/webhooks", json={"dag_id": "orders", **fields})
    assert response.status_code == 201, response.text
    hook: dict[str, Any] = response.json()
    return hook


async def deliver(
    stack: Stack, hook_id: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """A sender's call: no bearer token."""
    async with httpx.AsyncClient(base_url=stack.settings.api_url) as sender:
        return await sender.post(f"/api/v1/webhooks/{hook_id}", content=body, headers=headers)


async def runs_of(stack: Stack, dag_id: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/dags/{dag_id}/runs")
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["dag_runs"]
    return runs


async def deliveries_of(stack: Stack, hook_id: str, **params: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/webhooks/{hook_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["deliveries"])
    deliveries: list[dict[str, Any]] = body["deliveries"]
    return deliveries


async def test_a_github_signed_call_starts_a_run_with_the_mapped_conf(stack: Stack) -> None:
    stack.write_dag("orders.py", ORDERS)
    await stack.wait_for_dag("orders")
    hook = await create_hook(
        stack,
        name="shop",
        conf_fields={"order_id": "/order/id", "branch": "/ref"},
        secret="a-long-enough-test-secret",
    )
    assert hook["hook_id"] == "orders.shop" and hook["secret"] == "a-long-enough-test-secret"
    assert hook["url"].endswith("/api/v1/webhooks/orders.shop")
    body = json.dumps({"order": {"id": 42, "note": "x"}, "ref": "refs/heads/dev"}).encode()

    answer = await deliver(stack, "orders.shop", body, github_headers(hook["secret"], body, "d-1"))

    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    assert receipt["delivery_id"] == "d-1" and receipt["verdict"] == "accepted"
    run_id = receipt["run_id"]
    assert await stack.wait_for_run("orders", run_id) == "success"
    log = await stack.logs("orders", run_id, "show")
    assert "conf: [('branch', 'refs/heads/dev'), ('order_id', 42)]" in log

    # A replay of the delivery id starts nothing and names the first run.
    replay = await deliver(stack, "orders.shop", body, github_headers(hook["secret"], body, "d-1"))
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"delivery_id": "d-1", "verdict": "duplicate", "run_id": run_id}
    assert [run["run_id"] for run in await runs_of(stack, "orders")] == [run_id]
    recorded = await deliveries_of(stack, "orders.shop")
    assert [(d["verdict"], d["status_code"], d["run_id"]) for d in recorded] == [
        ("duplicate", 200, run_id),
        ("accepted", 202, run_id),
    ]
    assert recorded[1]["source_address"] == "127.0.0.1"


async def test_concurrent_replays_of_one_delivery_start_one_run(stack: Stack) -> None:
    stack.write_dag("orders.py", ORDERS)
    await stack.wait_for_dag("orders")
    hook = await create_hook(stack, name="shop", conf_fields={"order_id": "/id"})
    body = b'{"id": 3}'
    headers = github_headers(hook["secret"], body, "same-delivery")

    answers = await asyncio.gather(
        *(deliver(stack, "orders.shop", body, headers) for _ in range(6))
    )

    assert sorted(a.status_code for a in answers) == [200] * 5 + [202], [a.text for a in answers]
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert len(await runs_of(stack, "orders")) == 1
    verdicts = sorted(d["verdict"] for d in await deliveries_of(stack, "orders.shop"))
    assert verdicts == ["accepted"] + ["duplicate"] * 5


async def test_bad_signatures_are_refused_recorded_and_start_nothing(stack: Stack) -> None:
    stack.write_dag("orders.py", ORDERS)
    await stack.wait_for_dag("orders")
    hook = await create_hook(stack, name="shop", conf_fields={"order_id": "/id"})
    stamped = await create_hook(stack, name="stamped", signature="timestamped")
    body = b'{"id": 7}'
    secret = hook["secret"]

    refused = [
        await deliver(stack, "orders.shop", body, {"Content-Type": "application/json"}),
        await deliver(stack, "orders.shop", body, github_headers("wrong secret", body, "d-7")),
        await deliver(stack, "orders.shop", b'{"id": 8}', github_headers(secret, body)),
        await deliver(
            stack, "orders.stamped", body,
            timestamped_headers(stamped["secret"], body, int(time.time()) - 600),
        ),
    ]  # fmt: skip

    assert [r.status_code for r in refused] == [401, 401, 401, 401]
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert "missing" in refused[0].json()["detail"]
    assert "away from the server's clock" in refused[3].json()["detail"]
    assert await runs_of(stack, "orders") == []
    verdicts = [d["verdict"] for d in await deliveries_of(stack, "orders.shop")]
    assert verdicts == ["bad_signature"] * 3
    # A forged call did not use up the genuine delivery id.
    genuine = await deliver(stack, "orders.shop", body, github_headers(secret, body, "d-7"))
    assert genuine.status_code == 202, genuine.text
    # A body over 1 MiB is refused unread.
    huge = b"x" * (1024 * 1024 + 1)
    too_large = await deliver(stack, "orders.shop", huge, github_headers(secret, huge))
    assert too_large.status_code == 413, too_large.text
    latest = (await deliveries_of(stack, "orders.shop"))[0]
    assert (latest["verdict"], latest["status_code"]) == ("bad_payload", 413)
    # Unknown hooks are a 404, recorded nowhere.
    assert (await deliver(stack, "orders.nope", body, {})).status_code == 404
    assert (await deliver(stack, "orders.shop%00", body, {})).status_code == 422


async def test_timestamped_form_filtered_and_invalid_deliveries(stack: Stack) -> None:
    stack.write_dag("orders.py", ORDERS)
    await stack.wait_for_dag("orders")
    hook = await create_hook(
        stack,
        name="stamped",
        signature="timestamped",
        conf_fields={"order_id": "/order/id"},
        filters=[{"pointer": "/action", "equals": "paid"}],
    )
    secret, now = hook["secret"], int(time.time())

    paid = json.dumps({"action": "paid", "order": {"id": 5}}).encode()
    accepted = await deliver(stack, "orders.stamped", paid, timestamped_headers(secret, paid, now))
    assert accepted.status_code == 202, accepted.text
    assert await stack.wait_for_run("orders", accepted.json()["run_id"]) == "success"

    # GitHub's form content type: the JSON rides in the "payload" field.
    form = urlencode({"payload": json.dumps({"action": "paid", "order": {"id": 6}})}).encode()
    form_headers = timestamped_headers(secret, form, now)
    form_headers["Content-Type"] = "application/x-www-form-urlencoded"
    from_form = await deliver(stack, "orders.stamped", form, form_headers)
    assert from_form.status_code == 202, from_form.text
    run = await stack.client.get(f"/api/v1/dags/orders/runs/{from_form.json()['run_id']}")
    assert run.json()["conf"] == {"order_id": 6}

    refunded = json.dumps({"action": "refunded", "order": {"id": 5}}).encode()
    filtered = await deliver(
        stack, "orders.stamped", refunded, timestamped_headers(secret, refunded, now)
    )
    assert filtered.status_code == 202, filtered.text
    assert filtered.json()["verdict"] == "filtered" and filtered.json()["run_id"] is None

    no_id = json.dumps({"action": "paid", "order": {"id": "five"}}).encode()
    bad_conf = await deliver(
        stack, "orders.stamped", no_id, timestamped_headers(secret, no_id, now)
    )
    assert bad_conf.status_code == 422, bad_conf.text
    assert [e["field"] for e in bad_conf.json()["errors"]] == ["conf.order_id"]

    broken = b'{"action": "paid", '
    bad_payload = await deliver(
        stack, "orders.stamped", broken, timestamped_headers(secret, broken, now)
    )
    assert bad_payload.status_code == 422, bad_payload.text

    assert len(await runs_of(stack, "orders")) == 2
    verdicts = [d["verdict"] for d in await deliveries_of(stack, "orders.stamped")]
    assert verdicts == ["bad_payload", "bad_conf", "filtered", "accepted", "accepted"]
    only_filtered = await deliveries_of(stack, "orders.stamped", verdict="filtered")
    assert [d["verdict"] for d in only_filtered] == ["filtered"]


async def test_a_declared_hook_follows_its_dag_file(stack: Stack) -> None:
    stack.write_dag("declared.py", DECLARED.format(triggers=PUSH_HOOK))
    await stack.wait_for_dag("declared")
    listed = await stack.client.get("/api/v1/webhooks", params={"dag_id": "declared"})
    assert listed.status_code == 200, listed.text
    (hook,) = listed.json()["webhooks"]
    assert (hook["hook_id"], hook["origin"], hook["has_secret"]) == ("declared.push", "dag", False)
    assert hook["filters"] == [{"pointer": "/ref", "equals": "refs/heads/main"}]
    body = json.dumps({"ref": "refs/heads/main"}).encode()

    unset = await deliver(stack, "declared.push", body, github_headers("guess", body))
    assert unset.status_code == 401 and "no secret yet" in unset.json()["detail"]

    secret = (await stack.client.post("/api/v1/webhooks/declared.push/secret", json={})).json()
    assert len(secret["secret"]) >= 32 and secret["has_secret"] is True
    started = await deliver(stack, "declared.push", body, github_headers(secret["secret"], body))
    assert started.status_code == 202, started.text
    assert await stack.wait_for_run("declared", started.json()["run_id"]) == "success"
    log = await stack.logs("declared", started.json()["run_id"], "show")
    assert "conf: [('branch', 'refs/heads/main')]" in log

    refused = await stack.client.patch("/api/v1/webhooks/declared.push", json={"filters": []})
    assert refused.status_code == 409, refused.text
    assert (await stack.client.delete("/api/v1/webhooks/declared.push")).status_code == 409

    stack.write_dag("declared.py", DECLARED.format(triggers=""))

    async def deactivated() -> bool:
        read = await stack.client.get("/api/v1/webhooks/declared.push")
        return read.status_code == 200 and read.json()["is_active"] is False

    await wait_until(deactivated)
    gone = await deliver(stack, "declared.push", body, github_headers(secret["secret"], body))
    assert gone.status_code == 409, gone.text
    verdicts = [d["verdict"] for d in await deliveries_of(stack, "declared.push")]
    assert verdicts == ["inactive", "accepted", "bad_signature"]


async def test_roles_viewer_reads_operator_manages_admin_sets_secrets(stack: Stack) -> None:
    stack.write_dag("orders.py", ORDERS)
    await stack.wait_for_dag("orders")
    tokens = {}
    async with stack.database.sessions.begin() as session:
        for role in (Role.VIEWER, Role.OPERATOR):
            tokens[role] = await create_token(session, f"{role}-user", role, datetime.now(UTC))
    hook = await create_hook(stack, name="shop")
    viewer = {"Authorization": f"Bearer {tokens[Role.VIEWER]}"}
    operator = {"Authorization": f"Bearer {tokens[Role.OPERATOR]}"}
    new_hook = {"dag_id": "orders", "name": "other"}
    client = stack.client

    assert (await client.get("/api/v1/webhooks", headers=viewer)).status_code == 200
    read = await client.get("/api/v1/webhooks/orders.shop", headers=viewer)
    assert read.status_code == 200 and "secret" not in read.json()
    assert (await client.post("/api/v1/webhooks", json=new_hook, headers=viewer)).status_code == 403
    assert (
        await client.post("/api/v1/webhooks", json=new_hook, headers=operator)
    ).status_code == 201
    patched = await client.patch(
        "/api/v1/webhooks/orders.shop", json={"is_active": False}, headers=operator
    )
    assert patched.status_code == 200 and patched.json()["is_active"] is False
    secret_url = f"/api/v1/webhooks/{hook['hook_id']}/secret"
    assert (await client.post(secret_url, json={}, headers=operator)).status_code == 403
    assert (
        await client.delete("/api/v1/webhooks/orders.other", headers=operator)
    ).status_code == 204
    assert (await client.get("/api/v1/webhooks/orders.other")).status_code == 404

    invalid = await client.post(
        "/api/v1/webhooks", json={**new_hook, "conf_fields": {"id": "no-slash"}}
    )
    assert invalid.status_code == 422, invalid.text
    assert invalid.json()["errors"][0]["field"] == "body.conf.id"
    taken = await client.post("/api/v1/webhooks", json={"dag_id": "orders", "name": "shop"})
    assert taken.status_code == 409, taken.text

    async with stack.database.sessions() as session:
        actions = set(await session.scalars(select(AuditEntry.action)))
    assert {"webhook.create", "webhook.update", "webhook.delete"} <= actions


async def test_the_example_dag_runs_from_a_signed_shop_call(stack: Stack) -> None:
    stack.write_dag("webhook_orders.py", EXAMPLE.read_text())
    await stack.wait_for_dag("webhook_orders")
    hook_url = "/api/v1/webhooks/webhook_orders.paid"
    given = {"secret": "the-shop-shares-this-secret"}
    assert (await stack.client.post(f"{hook_url}/secret", json=given)).status_code == 200
    body = json.dumps(
        {"event": "order.paid", "order": {"id": 1042, "total": 99.5, "currency": "USD"}}
    ).encode()

    answer = await deliver(
        stack,
        "webhook_orders.paid",
        body,
        timestamped_headers(given["secret"], body, int(time.time())),
    )

    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    assert await stack.wait_for_run("webhook_orders", run_id) == "success"
    assert "loading order 1042: 99.5 USD" in await stack.logs(
        "webhook_orders", run_id, "load_order"
    )
