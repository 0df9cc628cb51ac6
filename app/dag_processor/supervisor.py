"""The DAG processor: keeps the database in line with the DAGs folder.

A pass hashes every candidate file, parses (in child processes) those whose content changed since
the last pass, records their DAGs or import errors, and forgets files that are gone. ``run`` does a
pass at start, after every batch of file-system changes, and every ``dag_rescan_interval`` seconds
as a safety net for changes a watcher cannot see (network mounts, a re-created folder).
``process_once`` is the same pass for tests and one-shot commands: it returns when the database
matches the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import DataError
from watchfiles import awatch

from app.dag_processor.parsing import ParseResult, parse_files
from app.dag_processor.store import (
    FileOutcome,
    invalidate_failed_files,
    load_file_hashes,
    record_deleted_file,
    record_failed_file,
    record_parsed_file,
)
from app.db.engine import Database
from app.db.outage import OUTAGE_RETRY, UNAVAILABLE
from weir.config import Settings

__all__ = ["DagProcessor"]

logger = logging.getLogger(__name__)

DEBOUNCE_MS = 300  # editors save in bursts (write, rename, chmod); one pass per burst
_MAX_PASSES = 5  # bounds re-parsing of refused files after DAG ids were released


class DagProcessor:
    """Parses the DAGs folder into the database; one per ``weir api`` process."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        # absolute(), not resolve(): a folder that is a symlink (git-sync) may be re-pointed.
        self._folder = settings.dags_folder.absolute()
        self._time_limit = settings.dag_parse_timeout
        self._rescan_interval = settings.dag_rescan_interval
        self._database = database
        self._on_change = on_change

    async def process_once(self) -> int:
        """Bring the database in line with the folder; returns how many files were parsed or
        forgotten. A missing folder changes nothing: an unmounted volume must not look like every
        DAG file deleted."""
        if not self._folder.is_dir():
            logger.warning("DAGs folder %s does not exist; will look again", self._folder)
            return 0
        total = 0
        for _ in range(_MAX_PASSES):
            processed, released = await self._process_pass()
            total += processed
            # A file refused for defining a DAG id another file owned may own it now.
            if not released or not await self._invalidate_failed_files():
                break
        if total and self._on_change is not None:
            self._on_change()
        if total:
            release_free_memory()
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Process at start, on file changes and every rescan interval, until ``stop`` is set."""
        wake = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch(stop, wake))
            # Let the watcher register before the first scan, so no edit slips between the two.
            await asyncio.sleep(0)
            while not stop.is_set():
                wake.clear()
                rest = await self._process_logging_errors()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), rest)

    async def _process_logging_errors(self) -> float:
        """One cycle; a failure is logged and the next cycle retries. Returns how long to rest:
        the rescan interval, or ``OUTAGE_RETRY`` while the database is unavailable (logged once
        per outage, by ``app.db.outage``)."""
        try:
            await self.process_once()
        except UNAVAILABLE:
            return OUTAGE_RETRY
        except Exception:
            logger.exception(
                "Processing the DAGs folder %s failed; retrying on the next change or within %g s",
                self._folder,
                self._rescan_interval,
            )
        return self._rescan_interval

    async def _watch(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Set ``wake`` on every batch of changes until ``stop``; re-register when the folder is
        re-created (a watch dies with the directory it was put on)."""
        try:
            while not stop.is_set():
                try:
                    if self._folder.is_dir():  # else process_once warns, once per interval
                        await self._watch_folder(stop, wake)
                        continue
                except Exception:
                    logger.warning("Cannot watch DAGs folder %s", self._folder, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._rescan_interval)
        finally:
            wake.set()  # so that the processing loop sees ``stop`` at once

    async def _watch_folder(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        identity = _identity(self._folder)
        async for changes in awatch(
            self._folder,
            stop_event=stop,
            debounce=DEBOUNCE_MS,
            rust_timeout=int(self._rescan_interval * 1000),
            yield_on_timeout=True,
        ):
            if _identity(self._folder) != identity:
                wake.set()
                return
            if changes:  # empty after a quiet rescan interval: the processing loop times out then
                wake.set()

    async def _process_pass(self) -> tuple[int, bool]:
        """Parse changed files and forget deleted ones; also says whether DAG ids were released."""
        current = await asyncio.to_thread(_hash_files, self._folder)
        async with self._database.sessions.begin() as session:
            known = await load_file_hashes(session)
        changed = sorted(path for path, digest in current.items() if known.get(path) != digest)
        deleted = sorted(set(known) - set(current))
        released = False
        for fileloc in deleted:
            released |= await self._forget(fileloc)
        async with contextlib.aclosing(
            parse_files(self._folder, changed, self._time_limit)
        ) as parses:
            async for fileloc, result in parses:
                released |= await self._store(fileloc, current[fileloc], result)
        return len(changed) + len(deleted), released

    async def _forget(self, fileloc: str) -> bool:
        async with self._database.sessions.begin() as session:
            outcome = await record_deleted_file(session, fileloc)
        logger.info("DAG file %s is gone; inactive DAGs: %s", fileloc, outcome.deactivated)
        return bool(outcome.deactivated)

    async def _store(self, fileloc: str, file_hash: str, result: ParseResult) -> bool:
        """Record one parse in its own transaction; says whether DAG ids were released."""
        now = datetime.now(UTC)
        try:
            async with self._database.sessions.begin() as session:
                if result.error is not None:
                    await record_failed_file(session, fileloc, file_hash, result.error, now)
                    outcome = FileOutcome()
                else:
                    outcome = await record_parsed_file(
                        session, fileloc, file_hash, result.dags, now
                    )
        except DataError as exc:
            # Values the database refuses (a schedule longer than its column, say) are bad input:
            # the file gets an import error instead of failing every pass.
            error = f"Weir could not store the DAGs of {fileloc}: {exc.orig}"
            async with self._database.sessions.begin() as session:
                await record_failed_file(session, fileloc, file_hash, error, now)
            result = ParseResult(error=error)
            outcome = FileOutcome()
        _log_outcome(fileloc, result, outcome)
        return bool(outcome.deactivated)

    async def _invalidate_failed_files(self) -> int:
        async with self._database.sessions.begin() as session:
            return await invalidate_failed_files(session)


def _log_outcome(fileloc: str, result: ParseResult, outcome: FileOutcome) -> None:
    if result.error is not None:
        logger.warning(
            "DAG file %s failed to import; its DAGs keep their last good version", fileloc
        )
        return
    logger.info("DAG file %s parsed; DAGs: %s", fileloc, outcome.stored)
    for dag_id, owner in sorted(outcome.conflicts.items()):
        logger.warning("DAG file %s also defines dag_id=%s, owned by %s", fileloc, dag_id, owner)
    if outcome.deactivated:
        logger.info(
            "DAG file %s no longer defines (now inactive): %s", fileloc, outcome.deactivated
        )


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system after a pass: parsing and storing a large
    DAG (a 10,000-task version is tens of MB of dicts and JSON, briefly) leaves them in glibc's
    heap, where they would count in the process's RSS for good (16 MB of the API's peak in the
    bench's 10,000-task fan-out). A no-op where the C library has no ``malloc_trim``."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _load_libc()


def _hash_files(folder: Path) -> dict[str, str]:
    """``relative path -> SHA-256`` of every candidate DAG file (``*.py``; names starting with
    ``_`` or ``.``, files and directories alike, are skipped: ``__init__.py``, ``.git``...).
    Raises if the folder itself cannot be listed, so that it never reads as empty."""

    def refuse_unreadable(error: OSError) -> None:
        if Path(error.filename) == folder:
            raise error
        logger.warning("Skipping unreadable directory %s: %s", error.filename, error.strerror)

    digests: dict[str, str] = {}
    for directory, subdirectories, files in os.walk(folder, onerror=refuse_unreadable):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(("_", "."))]
        for name in files:
            if name.endswith(".py") and not name.startswith(("_", ".")):
                path = Path(directory, name)
                try:
                    content = path.read_bytes()
                except OSError as error:  # deleted since the listing, or unreadable
                    logger.warning("Skipping DAG file %s: %s", path, error.strerror)
                    continue
                digests[path.relative_to(folder).as_posix()] = hashlib.sha256(content).hexdigest()
    return digests


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        status = folder.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino
