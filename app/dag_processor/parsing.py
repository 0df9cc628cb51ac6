"""Parse DAG files in child processes with a time limit: the parent side of ``loader.py``.

A DAG file is user code: it may hang, exhaust memory or kill its interpreter. Each parse therefore
runs ``python -m app.dag_processor.loader`` in its own process group, which is killed whole when
the time limit passes, and every way a child can end becomes a ``ParseResult``, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import site
import sys
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from typing import Any

import app

__all__ = ["ParseResult", "parse_file", "parse_files"]

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 2
_STDERR_TAIL = 4000  # characters of a crashed child's standard error kept in the import error

# The directory that holds the ``app`` package, so the child finds the loader from any cwd.
_SOURCE_ROOT = str(Path(app.__file__).resolve().parent.parent)


@dataclasses.dataclass(frozen=True)
class ParseResult:
    """What one parse produced: the serialized DAGs, or the error text for the import error."""

    dags: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def is_ok(self) -> bool:
        return self.error is None


async def parse_files(
    dags_folder: Path,
    relative_paths: Iterable[str],
    time_limit: float,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AsyncGenerator[tuple[str, ParseResult]]:
    """Parse several files, at most ``concurrency`` children at a time (imports are CPU-bound),
    yielding each result as soon as it is ready so that it can be stored at once.

    Use it under ``contextlib.aclosing``: closing the iterator early stops the remaining parses.
    """
    slots = asyncio.Semaphore(concurrency)

    async def parse_one(relative_path: str) -> tuple[str, ParseResult]:
        async with slots:
            return relative_path, await parse_file(dags_folder, relative_path, time_limit)

    pending = [asyncio.ensure_future(parse_one(path)) for path in relative_paths]
    try:
        for next_done in asyncio.as_completed(pending):
            yield await next_done
    finally:
        for parse in pending:
            parse.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def parse_file(dags_folder: Path, relative_path: str, time_limit: float) -> ParseResult:
    """Import one file in a child process, killed if still running after ``time_limit`` s."""
    outcome = await _run_loader(dags_folder, relative_path, time_limit)
    if outcome is None:
        logger.warning("Parsing DAG file %s timed out after %g s", relative_path, time_limit)
        return ParseResult(
            error=(
                f"Importing {relative_path} timed out after {time_limit:g} s and was stopped. Move "
                "slow work (network calls, big queries) from the top level of the file into "
                "tasks, or raise WEIR_DAG_PARSE_TIMEOUT."
            )
        )
    returncode, stdout, stderr = outcome
    if stderr:
        logger.debug("Output of DAG file %s:\n%s", relative_path, stderr.decode(errors="replace"))
    return _read_document(relative_path, returncode, stdout, stderr)


async def _run_loader(
    dags_folder: Path, relative_path: str, time_limit: float
) -> tuple[int, bytes, bytes] | None:
    """Run the child to completion: its exit code and output, or None when it timed out."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.dag_processor.loader",
        str(dags_folder),
        relative_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_environment(),
        # Its own process group, so a kill also reaches whatever the DAG file started; otherwise
        # a surviving grandchild would hold the pipes open and the parent would wait forever.
        start_new_session=True,
    )
    communication = asyncio.ensure_future(process.communicate())
    try:
        done, _ = await asyncio.wait({communication}, timeout=time_limit)
    finally:
        # Reached on timeout and when the caller is cancelled: never leave a child behind.
        if not communication.done():
            _kill_group(process)
            await communication  # the pipes reach EOF once the group is gone
    if not done:
        return None
    stdout, stderr = communication.result()
    return process.returncode if process.returncode is not None else -1, stdout, stderr


def _child_environment() -> dict[str, str]:
    """The parent's environment, with the source root on ``PYTHONPATH`` unless ``app`` is
    installed (the child finds it then; site-packages put first could shadow the stdlib)."""
    environment = dict(os.environ)
    site_directories = {
        os.path.realpath(d) for d in [*site.getsitepackages(), site.USER_SITE or ""]
    }
    if _SOURCE_ROOT not in site_directories:
        existing = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, existing]))
    return environment


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own in the meantime
        os.killpg(process.pid, signal.SIGKILL)


def _read_document(
    relative_path: str, returncode: int, stdout: bytes, stderr: bytes
) -> ParseResult:
    """Turn the child's one JSON document into a result; anything else means the child died."""
    try:
        document = json.loads(stdout)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return ParseResult(error=document["error"])
    if isinstance(document, dict) and isinstance(document.get("dags"), list):
        return ParseResult(dags=document["dags"])
    tail = stderr.decode(errors="replace")[-_STDERR_TAIL:]
    logger.warning(
        "DAG file %s: the parsing process exited with code %s", relative_path, returncode
    )
    return ParseResult(
        error=(
            f"The process importing {relative_path} exited with code {returncode} without a "
            f"result (killed, out of memory, or os._exit in the file?). Its last output:\n{tail}"
        )
    )
