"""Real Weir processes for end-to-end tests: ``weir api`` and ``weir worker`` as subprocesses,
configured through ``WEIR_*`` variables exactly as an operator would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["WeirProcess", "cli_env", "run_cli", "spawn", "weir_env"]

REPO = Path(__file__).resolve().parents[2]


class WeirProcess:
    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.process, self.log = name, process, log

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, no hand-back (what a crashed host looks like)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def weir_env(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env.update({f"WEIR_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def cli_env(**settings: object) -> dict[str, str]:
    """The environment of a ``weir`` command run from this source tree: exactly these
    ``WEIR_*`` settings, and a wide terminal so rich does not wrap what tests look for."""
    return {**weir_env(**settings), "COLUMNS": "200", "PYTHONPATH": str(REPO)}


async def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 90,
) -> tuple[int, str]:
    """Run ``python -m weir ARGS`` to its end: its exit code and its output (stdout + stderr)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "weir", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        stdout, _ = await asyncio.wait_for(
            child.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except TimeoutError:
        child.kill()
        await child.communicate()
        raise AssertionError(f"`weir {' '.join(args)}` still ran after {timeout} s") from None
    assert child.returncode is not None
    return child.returncode, stdout.decode(errors="replace")


@contextmanager
def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Iterator[WeirProcess]:
    """Run ``weir <args>``; on exit SIGTERM it (SIGKILL if it lingers) and keep its output."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "weir", *args], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    handle = WeirProcess(name, process, log)
    try:
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def is_serving(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
