"""A Weir of real processes for chaos tests: N ``weir api`` replicas and M ``weir worker``s as
subprocesses on the private PostgreSQL and RabbitMQ, with the faults a test inflicts on them.

All processes share one secret key, one admin token and one broker namespace (the test's own).
Each process logs to a file of its own under the test's ``logs`` folder; the fixture prints the
tails when a test fails. ``restart_worker`` does what systemd's ``Restart=always`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from tests.support.ledger import Ledger
from tests.support.processes import WeirProcess, is_serving, spawn, weir_env
from tests.support.stack import free_port, wait_until

__all__ = ["Cluster", "Replica"]

FINISHED = {"success", "failed"}


@dataclass
class Replica:
    process: WeirProcess
    url: str


@dataclass
class Cluster:
    database_url: str
    broker_url: str
    root: Path
    exits: contextlib.ExitStack
    token: str = field(default_factory=lambda: f"weir_chaos_{secrets.token_urlsafe(16)}")
    namespace: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex[:10]}")
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    replicas: list[Replica] = field(default_factory=list)
    workers: list[WeirProcess] = field(default_factory=list)
    _restarts: dict[str, int] = field(default_factory=dict)
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dags = self.root / "dags"
        self.logs = self.root / "logs"
        self.dags.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.root / "ledger.log")

    # Processes.

    def common_env(self, **settings: object) -> dict[str, str]:
        return weir_env(
            database_url=self.database_url,
            broker_url=self.broker_url,
            broker_namespace=self.namespace,
            dags_folder=self.dags,
            secret_key=self.secret_key,
            bootstrap_admin_token=self.token,
            **settings,
        )

    async def start_apis(self, count: int, **settings: object) -> list[Replica]:
        """Start ``count`` more replicas and wait until every one is ready."""
        started = [self._spawn_api(**settings) for _ in range(count)]
        for replica in started:
            await wait_until(partial(self._is_ready, replica), timeout=60, interval=0.2)
        return started

    def start_worker(
        self, api_urls: Sequence[str] | None = None, concurrency: int = 4, **settings: object
    ) -> WeirProcess:
        """A worker of the first replica (or of ``api_urls``: comma-separated once the worker
        takes several)."""
        urls = list(api_urls) if api_urls else [self.replicas[0].url]
        env = self.common_env(api_url=",".join(urls), worker_concurrency=concurrency, **settings)
        worker = self._spawn(f"worker-{len(self.workers) + 1}", ["worker"], env)
        self.workers.append(worker)
        return worker

    def restart_worker(self, dead: WeirProcess) -> WeirProcess:
        """Start the same worker again (same settings, a new process), as ``Restart=always``."""
        assert dead.process.poll() is not None, f"{dead.name} is still running"
        base = dead.name.split("~")[0]
        self._restarts[base] = self._restarts.get(base, 0) + 1
        worker = self._spawn(f"{base}~{self._restarts[base]}", ["worker"], self._envs[dead.name])
        self.workers[self.workers.index(dead)] = worker
        return worker

    @staticmethod
    def kill(process: WeirProcess) -> float:
        """SIGKILL (a crashed host): the monotonic time of the kill."""
        at = time.monotonic()
        process.kill()
        return at

    @staticmethod
    def pause(process: WeirProcess) -> None:
        process.process.send_signal(signal.SIGSTOP)

    @staticmethod
    def resume(process: WeirProcess) -> None:
        process.process.send_signal(signal.SIGCONT)

    def resume_all(self) -> None:
        """SIGCONT everything still running, so that tear-down's SIGTERM is heard."""
        for process in [*(r.process for r in self.replicas), *self.workers]:
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGCONT)

    async def wait_for_consumers(self, count: int, queue: str = "default") -> None:
        """Until ``count`` consumers read ``queue`` (the workers are up and subscribed), so that
        what a test measures is not a worker's boot."""
        connection = await aio_pika.connect(self.broker_url)
        try:

            async def subscribed() -> bool:
                try:
                    async with connection.channel() as probe:  # a failed passive declare closes it
                        declared = await probe.declare_queue(
                            f"{self.namespace}.{queue}", passive=True
                        )
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return False
                return (declared.declaration_result.consumer_count or 0) >= count

            await wait_until(subscribed, timeout=60, interval=0.2)
        finally:
            await connection.close()

    # The API.

    def client(self, replica: Replica | None = None) -> httpx.AsyncClient:
        url = (replica or self.live_replica()).url
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)

    def live_replica(self) -> Replica:
        for replica in self.replicas:
            if replica.process.process.poll() is None:
                return replica
        raise AssertionError("no API replica is running")

    def write_dag(self, name: str, source: str) -> None:
        (self.dags / name).write_text(source)

    async def wait_for_dag(self, dag_id: str) -> None:
        """Until every running replica knows ``dag_id``."""
        for replica in self.replicas:
            async with self.client(replica) as client:

                async def known(c: httpx.AsyncClient = client) -> bool:
                    return (await c.get(f"/api/v1/dags/{dag_id}")).status_code == 200

                await wait_until(known, timeout=60, interval=0.2)

    async def trigger(self, dag_id: str, count: int, through: Sequence[Replica] = ()) -> list[str]:
        """Trigger ``count`` runs, spread over ``through`` (default: every replica)."""
        targets = list(through) or self.replicas
        clients = [self.client(replica) for replica in targets]
        try:
            responses = await asyncio.gather(
                *(
                    clients[i % len(clients)].post(
                        f"/api/v1/dags/{dag_id}/runs", json={"conf": {"i": i}}
                    )
                    for i in range(count)
                )
            )
        finally:
            for client in clients:
                await client.aclose()
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses][:3]
        return [r.json()["run_id"] for r in responses]

    async def get(self, path: str, **params: Any) -> Any:
        """GET from a live replica; a 503 or a connection error (a replica killed, the database
        restarting: the faults under test) is asked again, for up to 30 s."""
        answer: list[Any] = []

        async def answered() -> bool:
            try:
                async with self.client() as client:
                    response = await client.get(path, params=params)
            except httpx.TransportError:
                return False
            if response.status_code == 503:
                return False
            assert response.status_code == 200, response.text
            answer.append(response.json())
            return True

        await wait_until(answered, timeout=30, interval=0.2)
        return answer[0]

    async def run_states(self, dag_id: str) -> dict[str, str]:
        runs = await self.get(f"/api/v1/dags/{dag_id}/runs", limit=500)
        return {r["run_id"]: r["state"] for r in runs["dag_runs"]}

    async def wait_for_runs(self, dag_id: str, run_ids: Sequence[str], timeout: float) -> float:
        """Until every run has ended; the seconds it took."""
        started = time.monotonic()

        async def all_finished() -> bool:
            states = await self.run_states(dag_id)
            return all(states.get(run_id) in FINISHED for run_id in run_ids)

        await wait_until(all_finished, timeout=timeout, interval=0.25)
        return time.monotonic() - started

    async def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found = await self.get(f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks")
        instances: list[dict[str, Any]] = found["task_instances"]
        return instances

    async def task_detail(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance with its ``attempts`` (each with its worker, ``hostname:pid``)."""
        detail: dict[str, Any] = await self.get(
            f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
        )
        return detail

    async def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        async with self.client() as client:
            response = await client.get(
                f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
                params={"format": "text"},
            )
        assert response.status_code == 200, response.text
        return response.text

    # Failure reports.

    def log_tails(self, chars: int = 6000) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace")
            parts.append(f"===== {log.name} (last {chars} chars) =====\n{text[-chars:]}")
        return "\n".join(parts)

    # Internals.

    def _spawn_api(self, **settings: object) -> Replica:
        port = free_port()
        env = self.common_env(port=port, **settings)
        name = f"api-{len(self.replicas) + 1}"
        replica = Replica(self._spawn(name, ["api", "--port", str(port)], env), self._url(port))
        self.replicas.append(replica)
        return replica

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> WeirProcess:
        process = self.exits.enter_context(spawn(name, args, env, self.logs))
        self._envs[name] = env
        return process

    @staticmethod
    def _url(port: int) -> str:
        return f"http://127.0.0.1:{port}"

    async def _is_ready(self, replica: Replica) -> bool:
        code = replica.process.process.poll()
        if code is not None:
            raise AssertionError(
                f"{replica.process.name} exited {code}:\n{replica.process.output()}"
            )
        return await asyncio.to_thread(is_serving, replica.url)


def pids_of_children(pid: int) -> list[int]:
    """The live descendants of ``pid`` (from /proc), to check that none outlives a killed one."""
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    children = [int(p) for p in done.stdout.split()]
    return children + [g for c in children for g in pids_of_children(c)]


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
