"""Weir's side: its own bench (``python -m bench``) as a subprocess, on the same shapes and sizes,
read back from the JSON it writes. Weir is measured by the suite that owns its figures, so both
tables always agree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.figures import Figure
from bench.peers.compare import weir_figures

__all__ = ["WeirBenchError", "read_weir_result", "run_weir_bench", "weir_bench_command"]

ROOT = Path(__file__).resolve().parents[2]
_STOP_TIMEOUT = 60.0


class WeirBenchError(RuntimeError):
    """Weir's bench failed or wrote nothing this comparison can read."""


def weir_bench_command(output: Path, *, width: int, length: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "--backend",
        "postgres",
        "--only",
        "fanout,chain,trigger",
        "--width",
        str(width),
        "--length",
        str(length),
        "--output",
        str(output),
    ]


async def run_weir_bench(
    command: Sequence[str], log: Path, *, timeout: float, on_line: Callable[[str], None]
) -> int:
    """Run Weir's bench, its output into ``log`` and each line to ``on_line``; its exit code."""
    with log.open("w") as out:
        out.write(f"$ {' '.join(command)}\n")
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                async for raw in process.stdout:
                    line = raw.decode(errors="replace")
                    out.write(line)
                    if line.strip():
                        on_line(line.strip())
                return await process.wait()
        except TimeoutError:
            await _interrupt(process)
            raise WeirBenchError(
                f"Weir's bench did not finish within {timeout:.0f} s; see {log}"
            ) from None


async def _interrupt(process: asyncio.subprocess.Process) -> None:
    """Ctrl-C, so the bench stops its Weir and drops its database; then whatever is left of its
    process group (its own session: only what it started) is killed."""
    process.send_signal(signal.SIGINT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def read_weir_result(output: Path, code: int, log: Path) -> list[Figure]:
    """Weir's figures from the JSON its bench wrote (some may be missing if it exited non-zero)."""
    if not output.exists():
        raise WeirBenchError(f"Weir's bench exited {code} and wrote no {output}; see {log}")
    figures = weir_figures(json.loads(output.read_text()))
    if code != 0 and not figures:
        raise WeirBenchError(f"Weir's bench exited {code}; see {log}")
    return figures
