"""Import one DAG file and report the DAGs it defines.

Run as ``python -m app.dag_processor.loader <dags_folder> <relative_path>`` in a child process, so
that a file that hangs, crashes the interpreter or leaks state cannot hurt the service: the parent
(``parsing.py``) enforces the time limit by killing the child. The child writes exactly one JSON
document to its standard output, ``{"dags": [Dag.to_dict(), ...]}`` or ``{"error": "<traceback>"}``;
whatever the DAG file itself prints goes to standard error.

``load_dag_file`` is the same import as a plain function, for workers that need the task callables.
This module imports nothing but ``weir`` and the standard library, so a DAG file's import costs
only what the file itself imports.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from weir.dag import Dag
from weir.dag_file import import_dag_file
from weir.errors import DagDefinitionError

__all__ = ["load_dag_file", "main"]

MODULE_PREFIX = "weir_dag_file_"


def load_dag_file(dags_folder: Path, relative_path: str) -> list[Dag]:
    """Import ``relative_path`` afresh and return the DAGs it built, in definition order.

    Every call executes the file again under a new module name, so an edited file is never served
    from a cache. Raises whatever the file raises, and ``DagDefinitionError`` when it defines one
    DAG id twice.
    """
    folder = dags_folder.resolve()
    module_name = f"{MODULE_PREFIX}{uuid.uuid4().hex}"
    found = import_dag_file(folder, folder / relative_path, module_name)
    _refuse_duplicate_ids(found, relative_path)
    return found


def _refuse_duplicate_ids(dags: list[Dag], relative_path: str) -> None:
    counts = Counter(d.dag_id for d in dags)
    repeated = sorted(dag_id for dag_id, n in counts.items() if n > 1)
    if repeated:
        raise DagDefinitionError(
            f"{relative_path} defines the DAG id(s) {', '.join(map(repr, repeated))} more than "
            "once: give each DAG its own dag_id, or call each @dag function once."
        )


def _describe(dags_folder: Path, relative_path: str) -> str:
    """The JSON document the parent reads; any failure of the user's code becomes its traceback
    (``SystemExit`` included: a file calling ``sys.exit()`` is a broken file, not a result)."""
    try:
        dags = load_dag_file(dags_folder, relative_path)
        # Serialized inside the guard: a DAG whose options are not JSON-safe is an error too.
        return json.dumps({"dags": [d.to_dict() for d in dags]})
    except (Exception, SystemExit) as exc:
        return json.dumps({"error": _format_error(exc)})


def _format_error(exc: BaseException) -> str:
    """The traceback from the DAG file down: the loader's and importlib's frames are noise to the
    person fixing the file."""
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if not _is_machinery(frame.filename)]
    )
    return "".join(report.format())


def _is_machinery(filename: str) -> bool:
    return filename == __file__ or filename.startswith("<frozen importlib")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[int]:
    """Point file descriptor 1 at standard error while user code runs (``print``, C extensions
    and subprocesses alike), yielding a duplicate of the real standard output for the result."""
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        yield real_stdout
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)


def main(argv: list[str]) -> int:
    """Child-process entry point: always exits 0 with one JSON document, unless killed."""
    if len(argv) != 2:
        sys.stderr.write(
            "usage: python -m app.dag_processor.loader <dags_folder> <relative_path>\n"
        )
        return 2
    with _stdout_to_stderr() as real_stdout:
        document = _describe(Path(argv[0]), argv[1])
        with os.fdopen(os.dup(real_stdout), "w", encoding="utf-8") as out:
            out.write(document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
