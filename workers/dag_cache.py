"""Finds the task a claim names, by importing its DAG file from the worker's own DAGs folder.

Workers import DAG files as Airflow's do: the claim names the file relative to the folder and the
hash of the version the service parsed. Imports are cached by ``(path, sha256 of the content)``,
so a file is executed once per version and an edited file is imported afresh. When the file on
disk differs from the claim's hash, the worker warns and runs what is on disk. The bytes that are
hashed are the bytes that are executed, so the cache key always matches the code that runs.

Reading and hashing the file is done once per ``(file, version the service names)``, not per task:
what it gave is remembered, so a task and its callbacks (and every other task of that version)
find their DAG with one dictionary lookup, on the event loop, without a thread or a ``stat``.
A file changed on disk under an unchanged version is therefore not seen until the service parses
it and names the new version, which is what the service schedules from anyway.

Each cached version is its own module (``weir_worker_dag_<path>_<hash>``), registered in
``sys.modules`` while it is cached because dataclasses, typing and pickle look modules up by
name. Modules the file imports from the DAGs folder are forgotten after the import, so the next
version of the file sees the current version of its helpers too.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import sys
import threading
from pathlib import Path

from weir.dag import Dag
from weir.dag_file import import_dag_file
from weir.errors import WeirError
from weir.messages import ClaimAccepted
from weir.task import Task
from workers.identity import attempt_label

__all__ = ["DagCache", "TaskNotFound"]

logger = logging.getLogger(__name__)

MODULE_PREFIX = "weir_worker_dag_"


class TaskNotFound(WeirError):
    """The DAG file, DAG or task a claim names is not what this worker's DAGs folder holds."""


_Key = tuple[Path, str]
"""An imported version: the file's resolved path and the sha256 of the bytes executed."""
_Named = tuple[str, str]
"""A version as the service names it: ``(fileloc, file_hash)``."""


class DagCache:
    """DAG files imported by ``(path, content hash)``; safe to use from several threads."""

    def __init__(self, dags_folder: Path, *, max_files: int = 64) -> None:
        self._folder = dags_folder.resolve()
        self._max_files = max_files
        self._lock = threading.Lock()
        self._dags: collections.OrderedDict[_Key, tuple[str, dict[str, Dag]]] = (
            collections.OrderedDict()
        )
        # Written under the lock, read without it from the event loop (a dict lookup is atomic).
        self._named: dict[_Named, tuple[_Key, dict[str, Dag]]] = {}

    def cached_task(self, claim: ClaimAccepted) -> Task | None:
        """The task, if its version was loaded before (``None``: call ``load_task`` in a
        thread); raises ``TaskNotFound`` if that version lacks it. Never blocks."""
        found = self._named.get((claim.fileloc, claim.file_hash))
        return None if found is None else _find_task(found[1], claim)

    def cached_dags(self, fileloc: str, file_hash: str) -> dict[str, Dag] | None:
        """The DAGs of a version loaded before, else ``None``; never blocks."""
        found = self._named.get((fileloc, file_hash))
        return None if found is None else found[1]

    def load_task(self, claim: ClaimAccepted) -> Task:
        """The task the claim names, from the DAG file on disk. Runs the file's top-level code the
        first time this version is seen, so call it off the event loop."""
        dags = self.load_dags(claim.fileloc, claim.file_hash, attempt_label(claim))
        return _find_task(dags, claim)

    def load_dags(self, fileloc: str, file_hash: str, label: str) -> dict[str, Dag]:
        """The DAGs of a file by id (as ``load_task``; ``label`` names who asks in warnings)."""
        cached = self.cached_dags(fileloc, file_hash)
        if cached is not None:
            return cached
        path = self._locate(fileloc)
        try:
            source = path.read_bytes()
        except FileNotFoundError:
            raise TaskNotFound(
                f"DAG file {fileloc} is not in this worker's DAGs folder ({self._folder}). "
                "Workers import DAG files from their own folder: deploy the same files to the "
                "service and to every worker (WEIR_DAGS_FOLDER)."
            ) from None
        digest = hashlib.sha256(source).hexdigest()
        if digest != file_hash:
            logger.warning(
                "%s: %s on this worker (sha256 %s) differs from the version the service parsed "
                "(%s); running the file on disk",
                label,
                fileloc,
                digest[:12],
                file_hash[:12],
            )
        dags = self._dags_of(path, digest, source)
        with self._lock:
            if (path, digest) in self._dags:  # not evicted meanwhile by another thread's import
                self._named[(fileloc, file_hash)] = ((path, digest), dags)
        return dags

    def _locate(self, fileloc: str) -> Path:
        path = (self._folder / fileloc).resolve()
        if not path.is_relative_to(self._folder):
            raise TaskNotFound(
                f"DAG file path {fileloc!r} points outside the DAGs folder {self._folder}; "
                "refusing to import it."
            )
        return path

    def _dags_of(self, path: Path, digest: str, source: bytes) -> dict[str, Dag]:
        key = (path, digest)
        with self._lock:
            cached = self._dags.get(key)
            if cached is not None:
                self._dags.move_to_end(key)
                return cached[1]
            module_name = f"{MODULE_PREFIX}{_short_hash(str(path))}_{digest[:16]}"
            dags = _import_file(self._folder, path, module_name, source)
            self._dags[key] = (module_name, dags)
            while len(self._dags) > self._max_files:
                self._evict_oldest()
            return dags

    def _evict_oldest(self) -> None:
        """Forget the least recently imported version, its module and the names it had."""
        evicted, (module_name, _) = self._dags.popitem(last=False)
        sys.modules.pop(module_name, None)
        for named in [named for named, (key, _) in self._named.items() if key == evicted]:
            del self._named[named]


def _import_file(folder: Path, path: Path, module_name: str, source: bytes) -> dict[str, Dag]:
    """Execute ``source`` as the module ``module_name`` (kept while cached); DAGs by id."""
    found = import_dag_file(folder, path, module_name, source=source, keep=True)
    return {built.dag_id: built for built in found}


def _find_task(dags: dict[str, Dag], claim: ClaimAccepted) -> Task:
    found = dags.get(claim.dag_id)
    if found is None:
        raise TaskNotFound(
            f"{claim.fileloc} on this worker does not define DAG {claim.dag_id!r} (it defines "
            f"{sorted(dags) or 'none'}): deploy the same DAG files to the service and the workers."
        )
    task = found.tasks.get(claim.task_id)
    if task is None:
        raise TaskNotFound(
            f"DAG {claim.dag_id!r} in {claim.fileloc} on this worker has no task "
            f"{claim.task_id!r}: deploy the same DAG files to the service and the workers."
        )
    return task


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
