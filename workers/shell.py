"""Shell tasks: the task's function returns a command; it runs as an asyncio subprocess.

The command runs through ``/bin/sh`` in a fresh temporary directory (as Airflow's BashOperator
does), in a session of its own so that cancelling the attempt can stop the whole process group
(SIGTERM, then SIGKILL after ``TERMINATE_GRACE`` seconds). Standard output and standard error are
streamed into the attempt's log as they come. The return value is the last non-empty line of
standard output; a non-zero exit fails the attempt. The environment is the worker's, plus
``WEIR_DAG_ID``, ``WEIR_RUN_ID``, ``WEIR_TASK_ID``, ``WEIR_ATTEMPT`` and ``WEIR_LOGICAL_DATE``.

The command's output is read to its end: a background process that keeps the pipes open keeps the
attempt running too.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import signal
import tempfile
from contextlib import suppress

from weir.messages import ClaimAccepted
from weir.task import Task
from workers.capture import LogSink, capture_into, log_line
from workers.invocation import invoke_in_loop
from workers.outcome import Outcome

__all__ = ["run_shell"]

TERMINATE_GRACE = 5.0
_READ_SIZE = 64 * 1024
_TAIL_CHARS = 64 * 1024


async def run_shell(task: Task, claim: ClaimAccepted, log: LogSink) -> Outcome:
    """Build the command with the task's function, run it, and judge it by its exit code."""
    with capture_into(log):
        built = await invoke_in_loop(task, claim)
    if built.state == "failed":
        return built
    command = built.result
    if not isinstance(command, str) or not command.strip():
        return Outcome.failed(
            f"Shell task {claim.task_id!r} returned {command!r}: a @task.shell function must "
            "return the command to run, as a non-empty string."
        )
    log.write(log_line(logging.INFO, f"Running command: {command}"))
    with tempfile.TemporaryDirectory(prefix="weir-shell-") as cwd:
        code, last_line = await _run_command(command, cwd, _environment(claim), log)
    log.write(log_line(logging.INFO, f"Command exited with return code {code}"))
    if code != 0:
        return Outcome.failed(_describe_exit(code))
    return Outcome.success(last_line)


async def _run_command(
    command: str, cwd: str, env: dict[str, str], log: LogSink
) -> tuple[int, str | None]:
    """The exit code and the last non-empty line of standard output."""
    process = await _spawn(command, cwd, env)
    assert process.stdout is not None and process.stderr is not None  # both are pipes
    try:
        async with asyncio.TaskGroup() as group:
            stdout = group.create_task(_pump(process.stdout, log))
            group.create_task(_pump(process.stderr, log))
        code = await process.wait()
    except BaseException:
        await _stop(process)
        raise
    return code, _last_line(stdout.result())


async def _spawn(command: str, cwd: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start the command; if cancelled meanwhile, stop its whole process group before raising.

    Shielded because asyncio, cancelled half-way through starting a process, kills only the
    shell and may leave its pipes open until the shell's children exit.
    """
    spawning = asyncio.ensure_future(
        asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    )
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        process = await spawning
        await _stop(process)
        raise


async def _pump(stream: asyncio.StreamReader, log: LogSink) -> str:
    """Copy ``stream`` into the log as it comes; return its last ``_TAIL_CHARS`` characters."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    while True:
        chunk = await stream.read(_READ_SIZE)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            log.write(text)
            tail = (tail + text)[-_TAIL_CHARS:]
        if not chunk:
            return tail


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Stop the command's process group: SIGTERM, then SIGKILL if it lingers; reap it."""
    if process.returncode is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        async with asyncio.timeout(TERMINATE_GRACE):
            await process.wait()
    except TimeoutError:
        pass
    finally:
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
    await process.wait()


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _last_line(output: str) -> str | None:
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"The command was killed by {name}."
    return f"The command exited with code {code}."


def _environment(claim: ClaimAccepted) -> dict[str, str]:
    return {
        **os.environ,
        "WEIR_DAG_ID": claim.dag_id,
        "WEIR_RUN_ID": claim.run_id,
        "WEIR_TASK_ID": claim.task_id,
        "WEIR_ATTEMPT": str(claim.attempt),
        "WEIR_LOGICAL_DATE": claim.logical_date.isoformat(),
    }
