"""Importing a DAG file as a module of its own: shared by the DAG processor (to serialize its DAGs)
and by workers (to find the callables of the tasks they run).

Each import gets a module name the caller chooses, so two files with the same stem never share a
module. Sibling modules the file imports from the DAGs folder are forgotten afterwards, so the next
import of the file sees the current version of its helpers too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from weir.dag import Dag, collect_dags

__all__ = ["import_dag_file"]


def import_dag_file(
    folder: Path, path: Path, module_name: str, *, source: bytes | None = None, keep: bool = False
) -> list[Dag]:
    """Execute the file (or ``source``, the bytes read from it) as ``module_name``; return the
    DAGs it built, in definition order.

    The module is registered in ``sys.modules`` while it runs (dataclasses, typing and pickle look
    modules up by name) and stays there if ``keep`` (a worker's cache), else it is removed.
    """
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file Weir can import.", path=str(path))
    module = importlib.util.module_from_spec(spec)
    code = compile(source if source is not None else path.read_bytes(), str(path), "exec")
    with _importable_siblings(folder.resolve()), collect_dags() as found:
        sys.modules[module_name] = module
        try:
            exec(code, module.__dict__)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        if not keep:
            sys.modules.pop(module_name, None)
    return found


@contextlib.contextmanager
def _importable_siblings(folder: Path) -> Iterator[None]:
    """Let the file import the modules next to it, and forget them once the import is over.

    During the import the folder comes first on ``sys.path``, as a script's own folder does, so
    its siblings win over same-named modules elsewhere. Afterwards it stays at the end of
    ``sys.path``, as in Airflow, so that a task can still import a sibling lazily when it runs.
    """
    entry = str(folder)
    sys.path.insert(0, entry)
    before = set(sys.modules)
    try:
        yield
    finally:
        sys.path.remove(entry)  # the first occurrence: ours, unless the file inserted one before
        if entry not in sys.path:
            sys.path.append(entry)
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if module is not None and _is_from_folder(name, module, folder):
                sys.modules.pop(name, None)


def _is_from_folder(name: str, module: ModuleType, folder: Path) -> bool:
    """Whether ``module`` was found through the folder's ``sys.path`` entry. Matching the module's
    name to its file, not just its location, spares packages of a virtualenv kept inside the
    folder (purging those, a C extension above all, would break them) and the DAG file itself."""
    file = getattr(module, "__file__", None)
    if file is None:
        return False
    base = folder.joinpath(*name.split("."))
    return Path(file).resolve() in (base.with_suffix(".py"), base / "__init__.py")
