"""Real Weir processes for end-to-end tests: ``weir api`` and ``weir worker`` as subprocesses,
configured through ``WEIR_*`` variables exactly as an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["WeirProcess", "spawn", "weir_env"]


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
