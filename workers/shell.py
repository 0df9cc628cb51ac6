"""Shell tasks: the task's function returns a command; it runs as an asyncio subprocess.

The command runs through ``/bin/sh`` in a fresh temporary directory (as Airflow's BashOperator
does), in a session of its own so that cancelling the attempt can stop the whole process group
(SIGTERM, then SIGKILL after ``TERMINATE_GRACE`` seconds). Standard output and standard error are
streamed into the attempt's log as they come. The return value is the last non-empty line of
standard output; a non-zero exit fails the attempt. The environment is the worker's, plus
``WEIR_DAG_ID``, ``WEIR_RUN_ID``, ``WEIR_TASK_ID``, ``WEIR_ATTEMPT`` and ``WEIR_LOGICAL_DATE``.

The attempt ends when the shell exits, not when its pipes close: what the command left running in
its process group is then stopped (with a line in the log), and output still buffered in the pipes
is read for at most ``DRAIN_TIMEOUT`` seconds. The group is registered with the worker's reaper,
so it dies with the worker too.
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
from workers.reaper import MARKER, ProcessGroupReaper

__all__ = ["run_shell"]

TERMINATE_GRACE = 5.0
DRAIN_TIMEOUT = 1.0
_GROUP_CHECK = 0.05
_STREAM_LIMIT = 2**16
_READ_SIZE = 64 * 1024
_TAIL_CHARS = 64 * 1024


async def run_shell(
    task: Task, claim: ClaimAccepted, log: LogSink, reaper: ProcessGroupReaper
) -> Outcome:
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
        env = _environment(claim, reaper.marker)
        code, last_line = await _run_command(command, cwd, env, log, reaper)
    log.write(log_line(logging.INFO, f"Command exited with return code {code}"))
    if code != 0:
        return Outcome.failed(_describe_exit(code))
    return Outcome.success(last_line)


async def _run_command(
    command: str, cwd: str, env: dict[str, str], log: LogSink, reaper: ProcessGroupReaper
) -> tuple[int, str | None]:
    """The exit code and the last non-empty line of standard output."""
    process, exited = await _spawn(command, cwd, env)
    reaper.watch(process.pid)  # the shell leads its own group (``start_new_session``)
    assert process.stdout is not None and process.stderr is not None  # both are pipes
    stdout = asyncio.ensure_future(_pump(process.stdout, log))
    stderr = asyncio.ensure_future(_pump(process.stderr, log))
    try:
        await exited.wait()
        code = _returncode(process)
        if _is_group_alive(process.pid):
            log.write(log_line(logging.WARNING, LEFT_BEHIND.format(code=code)))
            await _stop_group(process.pid)
        await _drain((stdout, stderr))
    except BaseException:
        await _stop_group(process.pid)
        await _drain((stdout, stderr))
        raise
    finally:
        reaper.forget(process.pid)
    return code, _last_line(stdout.result()) if not stdout.cancelled() else None


LEFT_BEHIND = (
    "The shell exited with code {code} but left processes running in its process group; "
    "stopping them (SIGTERM, then SIGKILL after 5 s). A task ends when its shell does: wait for "
    "background jobs in the command (`wait`) if the task needs them."
)


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the shell itself exits: ``Process.wait`` would also wait for every process
    holding its pipes, which a background job may do for hours."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _spawn(
    command: str, cwd: str, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    """Start the command; if cancelled meanwhile, stop its whole process group before raising.

    Shielded because asyncio, cancelled half-way through starting a process, kills only the
    shell and may leave its pipes open until the shell's children exit.
    """
    loop = asyncio.get_running_loop()
    spawning = asyncio.ensure_future(
        loop.subprocess_shell(
            lambda: _ExitAwareProtocol(_STREAM_LIMIT, loop),
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
        transport, protocol = await asyncio.shield(spawning)
    except asyncio.CancelledError:
        transport, _ = await spawning
        _signal_group(transport.get_pid(), signal.SIGKILL)
        raise
    process = asyncio.subprocess.Process(transport, protocol, loop)
    return process, protocol.exited


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


async def _drain(pumps: tuple[asyncio.Future[str], ...]) -> None:
    """Let the pumps read what is left in the pipes; a process that left the group (a daemon)
    may hold them open for ever, so give up after ``DRAIN_TIMEOUT``."""
    _, pending = await asyncio.wait(pumps, timeout=DRAIN_TIMEOUT)
    for pump in pending:
        pump.cancel()
    await asyncio.wait(pumps)


async def _stop_group(pgid: int) -> None:
    """Stop what is left of the command's process group: SIGTERM, then SIGKILL if it lingers."""
    if not _is_group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    # Nothing tells when a whole group is gone: look every 50 ms for at most the grace period.
    for _ in range(int(TERMINATE_GRACE / _GROUP_CHECK)):
        await asyncio.sleep(_GROUP_CHECK)
        if not _is_group_alive(pgid):
            return
    _signal_group(pgid, signal.SIGKILL)


def _is_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its user: still alive
        return True
    return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _returncode(process: asyncio.subprocess.Process) -> int:
    code = process.returncode
    assert code is not None  # the protocol said it exited
    return code


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


def _environment(claim: ClaimAccepted, marker: str) -> dict[str, str]:
    return {
        **os.environ,
        MARKER: marker,  # found by the watchdog even before the group is registered
        "WEIR_DAG_ID": claim.dag_id,
        "WEIR_RUN_ID": claim.run_id,
        "WEIR_TASK_ID": claim.task_id,
        "WEIR_ATTEMPT": str(claim.attempt),
        "WEIR_LOGICAL_DATE": claim.logical_date.isoformat(),
    }
