"""``@dag``: calling the decorated function builds a ``Dag`` from the tasks its body creates,
validates it, and records it so the DAG processor (and a worker) can find it after importing the
file.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, Unpack, overload

from weir.dag_options import DagArguments, DagOptions
from weir.errors import DagDefinitionError
from weir.task import Task

__all__ = ["Dag", "collect_dags", "current_dag", "dag"]

P = ParamSpec("P")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")

_current: contextvars.ContextVar[Dag | None] = contextvars.ContextVar("weir_dag", default=None)
# The list the innermost ``collect_dags()`` block fills; None outside any block. A context variable
# (not a module-level list) keeps concurrent imports in threads apart and keeps no DAG built outside
# a block (a test, a worker calling a DAG function) alive forever.
_collector: contextvars.ContextVar[list[Dag] | None] = contextvars.ContextVar(
    "weir_dag_collector", default=None
)


class Dag:
    """A validated DAG: its tasks in definition order and the options of ``@dag``."""

    def __init__(self, dag_id: str, *, fileloc: str, options: DagOptions | None = None) -> None:
        if not _ID_PATTERN.match(dag_id):
            raise DagDefinitionError(
                f"DAG id {dag_id!r} in {fileloc} is not valid: use letters, digits, '_', '.', '-'."
            )
        self.dag_id = dag_id
        self.fileloc = fileloc
        self.options = options or DagOptions()
        self.tasks: dict[str, Task] = {}
        # Per function name, the suffix of the last id derived from it: ``name__1`` … up to it
        # are taken for good (tasks are never removed), so the next search starts there and a
        # DAG that calls one function n times costs O(n), not O(n²).
        self._last_suffix: dict[str, int] = {}

    def claim_task_id(self, explicit: str | None, name: str) -> str:
        """The id for a new task: the explicit one, else ``name``, ``name__1``, ``name__2``, …"""
        if explicit is not None and explicit in self.tasks:
            raise DagDefinitionError(
                f"DAG {self.dag_id!r} in {self.fileloc} has two tasks with id {explicit!r}: "
                "give one of them another task_id."
            )
        candidate = explicit if explicit is not None else self._derive_task_id(name)
        # Checked for derived ids too: a lambda's name, ``<lambda>``, is no valid id.
        if not _ID_PATTERN.match(candidate):
            raise DagDefinitionError(
                f"Task id {candidate!r} in DAG {self.dag_id!r} ({self.fileloc}) is not valid: "
                "use letters, digits, '_', '.', '-' (name the function, or pass task_id=...)."
            )
        return candidate

    def _derive_task_id(self, name: str) -> str:
        """The first free of ``name``, ``name__1``, ``name__2``, … (explicit ids may have taken
        some), searched from the last one derived from ``name``."""
        n = self._last_suffix.get(name, 0)
        candidate = f"{name}__{n}" if n else name
        while candidate in self.tasks:
            n += 1
            candidate = f"{name}__{n}"
        self._last_suffix[name] = n
        return candidate

    def add_task(self, task: Task) -> None:
        self.tasks[task.task_id] = task

    def validate(self) -> None:
        """Refuse unknown upstreams and cycles, naming the DAG, the task and the file."""
        if not self.tasks:
            raise DagDefinitionError(f"DAG {self.dag_id!r} in {self.fileloc} has no tasks.")
        for task in self.tasks.values():
            for upstream in task.upstream_ids:
                if self.tasks.get(upstream) is None or self.tasks[upstream].dag is not self:
                    raise DagDefinitionError(
                        f"Task {task.task_id!r} of DAG {self.dag_id!r} in {self.fileloc} depends "
                        f"on {upstream!r}, which is not a task of this DAG."
                    )
        self.topological_order()

    def topological_order(self) -> list[str]:
        """Task ids, upstreams first (in waves: the tasks whose upstreams are all in earlier
        waves, each wave in definition order); raises ``DagDefinitionError`` naming a task on a
        cycle. Linear in tasks and edges, so a long chain costs no more per task than a fan-out."""
        position = {tid: index for index, tid in enumerate(self.tasks)}
        waiting = {tid: len(task.upstream_ids) for tid, task in self.tasks.items()}
        downstream: dict[str, list[str]] = {}
        for task in self.tasks.values():
            for upstream in task.upstream_ids:
                downstream.setdefault(upstream, []).append(task.task_id)
        wave = [tid for tid, count in waiting.items() if count == 0]
        order: list[str] = []
        while wave:
            order.extend(wave)
            released = []
            for tid in wave:
                for child in downstream.get(tid, ()):
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        released.append(child)
            wave = sorted(released, key=position.__getitem__)
        if len(order) < len(self.tasks):
            self._raise_cycle(set(order))
        return order

    def _raise_cycle(self, ordered: set[str]) -> None:
        remaining = {
            tid: task.upstream_ids - ordered
            for tid, task in self.tasks.items()
            if tid not in ordered
        }
        cycle = _find_cycle(remaining)
        raise DagDefinitionError(
            f"DAG {self.dag_id!r} in {self.fileloc} has a cycle through task "
            f"{cycle[0]!r} ({' >> '.join(cycle)}): remove one of these dependencies."
        )

    def to_dict(self) -> dict[str, Any]:
        """The serialized structure the service stores and schedules from (JSON-safe)."""
        ordered = (self.tasks[tid] for tid in self.topological_order())
        return {
            "dag_id": self.dag_id,
            **self.options.to_dict(),
            "tasks": [t.to_dict() for t in ordered],
        }


def _find_cycle(remaining: dict[str, set[str]]) -> list[str]:
    """One cycle among tasks left unsorted, in dependency order and closed (``a, b, a``).

    Every left-over task still has a left-over upstream, so walking upstreams must loop; after
    ``len(remaining)`` steps the walk is on the loop (a task merely downstream of it is not)."""
    node = min(remaining)
    for _ in range(len(remaining)):
        node = min(remaining[node])
    walk = [node]
    while (node := min(remaining[node])) != walk[0]:
        walk.append(node)
    cycle = walk[::-1]  # walked upstream; report downstream, from the first id in sort order
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]


def current_dag() -> Dag | None:
    """The DAG whose body is being built, if any."""
    return _current.get()


@contextmanager
def collect_dags() -> Iterator[list[Dag]]:
    """Gather every DAG built while the block runs (the loader wraps a file's import in this)."""
    found: list[Dag] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


@overload
def dag(function: Callable[P, Any], /) -> Callable[P, Dag]: ...


@overload
def dag(
    function: None = None, /, **arguments: Unpack[DagArguments]
) -> Callable[[Callable[P, Any]], Callable[P, Dag]]: ...


def dag(
    function: Callable[P, Any] | None = None, /, **arguments: Unpack[DagArguments]
) -> Callable[P, Dag] | Callable[[Callable[P, Any]], Callable[P, Dag]]:
    """Decorate a function whose body creates tasks; calling it builds and registers the DAG.

    The options are those of ``DagOptions``. Typed with overloads so that ``@dag`` and
    ``@dag(...)`` keep DAG files type-checkable."""

    def decorate(body: Callable[P, Any]) -> Callable[P, Dag]:
        @functools.wraps(body)
        def build(*args: P.args, **kwargs: P.kwargs) -> Dag:
            values: dict[str, Any] = dict(arguments)
            dag_id = values.pop("dag_id", None) or body.__name__
            fileloc = inspect.getfile(body)
            values.setdefault("description", inspect.getdoc(body))
            options = DagOptions.build(f"DAG {dag_id!r} in {fileloc}", values)
            built = Dag(dag_id, fileloc=fileloc, options=options)
            token = _current.set(built)
            try:
                body(*args, **kwargs)
            finally:
                _current.reset(token)
            built.validate()
            collector = _collector.get()
            if collector is not None:
                collector.append(built)
            return built

        return build

    if function is not None:
        return decorate(function)
    return decorate
