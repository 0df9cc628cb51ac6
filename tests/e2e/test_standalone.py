"""The newcomer's path, as the README tells it: ``weir standalone`` on the example DAGs, driven with
the real ``weir`` CLI in subprocesses, stopped with Ctrl-C (SIGINT), and started again on the same
data directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import WeirProcess, is_serving, spawn, weir_env
from tests.support.stack import free_port, wait_until
from weir.config import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "dags"
EXAMPLE_DAGS = {"etl", "fan_out", "resilient"}
GRACE_PERIOD: float = Settings.model_fields["worker_grace_period"].default
TOKEN_LINE = re.compile(r"Admin API token: (weir_\S+)")
LOGIN_LINE = re.compile(r"log in as admin, password (\S+)\)")


@dataclass
class Standalone:
    process: WeirProcess
    url: str
    token: str
    password: str

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def _env() -> dict[str, str]:
    # No WEIR_* from the caller's shell: the newcomer has none. A wide terminal keeps rich from
    # wrapping the run ids the CLI prints; PYTHONPATH makes `-m weir` mean this source tree.
    return {**weir_env(), "COLUMNS": "200", "PYTHONPATH": str(REPO)}


@contextlib.asynccontextmanager
async def _standalone(data_dir: Path, logs: Path, name: str) -> AsyncIterator[Standalone]:
    """Start ``weir standalone`` the way the README does, and wait until it serves."""
    port = free_port()
    args = ["standalone", "--port", str(port), "--data-dir", str(data_dir)]
    with spawn(name, [*args, "--dags-folder", str(EXAMPLES)], _env(), logs) as process:
        url = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            assert process.process.poll() is None, process.output()
            return await asyncio.to_thread(is_serving, url)

        await wait_until(ready, timeout=60)
        printed = TOKEN_LINE.search(process.output())
        assert printed is not None, process.output()
        assert url in process.output()  # the dashboard's address, for the newcomer to open
        token = printed.group(1)
        assert (data_dir / "admin_token").read_text().strip() == token
        login = LOGIN_LINE.search(process.output())
        assert login is not None, process.output()
        yield Standalone(process, url, token, login.group(1))


async def _interrupt(process: WeirProcess) -> str:
    """Ctrl-C: SIGINT, then a clean exit (code 0, no traceback) within the grace period."""
    process.process.send_signal(signal.SIGINT)
    code = await asyncio.to_thread(process.process.wait, GRACE_PERIOD)
    output = process.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    return output


async def _weir(*args: str) -> str:
    """Run the real CLI; return its output, asserting it succeeded."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "weir", *args,
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(child.communicate(), timeout=60)
    output = stdout.decode()
    assert child.returncode == 0, output
    assert "Traceback" not in output, output
    return output


async def _wait_for_dags(client: httpx.AsyncClient) -> None:
    async def parsed() -> bool:
        response = await client.get("/api/v1/dags")
        return {d["dag_id"] for d in response.json()["dags"]} >= EXAMPLE_DAGS

    await wait_until(parsed, timeout=60)


async def _wait_for_run(client: httpx.AsyncClient, dag_id: str, run_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/dags/{dag_id}/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run if run["state"] in ("success", "failed") else None

    run: dict[str, Any] = await wait_until(finished, timeout=60)
    return run


async def _trigger_etl_with_the_cli(weir: Standalone) -> str:
    auth = ["--url", weir.url, "--token", weir.token]
    listing = await _weir("dags", "list", *auth)
    assert all(dag_id in listing for dag_id in EXAMPLE_DAGS), listing
    triggered = await _weir("dags", "trigger", "etl", "--conf", '{"rows": 3}', *auth)
    found = re.search(r"run (\S+) is \w+\.", triggered)
    assert found is not None, triggered
    return found.group(1)


async def test_the_newcomers_path(tmp_path: Path) -> None:
    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    async with _standalone(data_dir, logs, "standalone") as weir, weir.client() as client:
        await _wait_for_dags(client)
        run_id = await _trigger_etl_with_the_cli(weir)

        run = await _wait_for_run(client, "etl", run_id)
        assert (run["state"], run["conf"]) == ("success", {"rows": 3})
        shown = await _weir("runs", "show", "etl", run_id, "--url", weir.url, "--token", weir.token)
        assert f"etl run {run_id}: success" in shown, shown
        assert all(task in shown for task in ("extract", "transform", "load")), shown
        # Return values travelled extract -> transform -> load, and the context was there.
        logs_url = f"/api/v1/dags/etl/runs/{run_id}/tasks/load/logs?format=text"
        assert f"run {run_id} loaded 3 rows, total 60" in (await client.get(logs_url)).text

        async with httpx.AsyncClient(base_url=weir.url, timeout=30) as browser:  # no token
            refused = await browser.get("/")
            signed_in = await browser.post(
                "/login", data={"username": "admin", "password": weir.password, "next": "/"}
            )
            page = await browser.get("/")
        assert (refused.status_code, refused.headers["location"]) == (303, "/login?next=%2F")
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/")
        assert page.status_code == 200
        assert all(f"<strong>{dag_id}</strong>" in page.text for dag_id in EXAMPLE_DAGS)

        output = await _interrupt(weir.process)
    assert "received SIGINT: stopping" in output


async def test_a_restart_keeps_the_admin_token_and_the_runs(tmp_path: Path) -> None:
    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    async with _standalone(data_dir, logs, "first") as first, first.client() as client:
        await _wait_for_dags(client)
        response = await client.post("/api/v1/dags/etl/runs", json={"conf": {}})
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        assert (await _wait_for_run(client, "etl", run_id))["state"] == "success"
        await _interrupt(first.process)

    async with _standalone(data_dir, logs, "second") as second, second.client() as client:
        assert second.token == first.token
        response = await client.get(f"/api/v1/dags/etl/runs/{run_id}")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "success"
        await _interrupt(second.process)
    assert os.stat(data_dir / "admin_token").st_mode & 0o077 == 0  # the token file is private
