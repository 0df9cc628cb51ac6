"""``@task``: turn a function into a task factory. Calling it inside a ``@dag`` body adds a task to
that DAG and returns an ``XComArg``, a promise of the task's return value that downstream tasks
take as arguments and that ``>>`` wires explicitly.

``extract.partial(y=1).expand(x=upstream())`` adds a *mapped* task instead: one task instance per
element of ``upstream()``'s return value (or of a literal list), created by the scheduler once the
list is known (``app/scheduler/mapping.py``). The worker receives the element under the reserved
input key ``MAP_ELEMENT_INPUT``, and ``Task.resolve_arguments`` puts it in place of the argument.
The mapping API itself lives in ``weir/mapping.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Unpack, overload

from weir.errors import DagDefinitionError
from weir.messages import TaskKind
from weir.task_options import TaskArguments, TaskOptions

if TYPE_CHECKING:
    from weir.mapping import MappedArgument, PartialTask

__all__ = ["MAP_ELEMENT_INPUT", "Task", "TaskFunction", "XComArg", "add_task", "task"]

# The claim input that carries a mapped instance's element; ':' is never part of a task id, so it
# cannot collide with an upstream task's result.
MAP_ELEMENT_INPUT = "weir:map_element"


@dataclasses.dataclass(eq=False)
class Task:
    """One node of a DAG: the callable, the arguments it was called with, and its upstreams."""

    task_id: str
    dag: Any  # weir.dag.Dag; typed loosely to keep task.py free of an import cycle
    function: Callable[..., Any]
    kind: TaskKind
    options: TaskOptions
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    upstream_ids: set[str] = dataclasses.field(default_factory=set)
    mapped: MappedArgument | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def input_ids(self) -> set[str]:
        """The tasks whose return values this task takes as arguments."""
        return {ref.task.task_id for ref in _find_refs((self.args, self.kwargs))}

    def to_dict(self) -> dict[str, Any]:
        """The serialized node: what the scheduler needs, never the callable."""
        return {
            "task_id": self.task_id,
            "kind": self.kind.value,
            "upstream": sorted(self.upstream_ids),
            "inputs": sorted(self.input_ids()),
            **self.options.to_dict(),
            "doc": inspect.getdoc(self.function),
            # Only mapped tasks carry the key, so that unmapped DAGs keep their serialized form.
            **({"mapped": self.mapped.to_dict()} if self.mapped is not None else {}),
        }

    def resolve_arguments(self, inputs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call arguments with each ``XComArg`` replaced by its task's return value, and for a
        mapped instance its element in place of the expanded argument."""
        args = tuple(_substitute(a, inputs) for a in self.args)
        kwargs = {k: _substitute(v, inputs) for k, v in self.kwargs.items()}
        if self.mapped is not None:
            kwargs[self.mapped.arg] = inputs.get(MAP_ELEMENT_INPUT)
        return args, kwargs


class XComArg:
    """The future return value of a task; also the handle for ``>>`` and ``<<``."""

    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task = task

    def __rshift__(self, other: XComArg | Iterable[XComArg]) -> XComArg | Iterable[XComArg]:
        for downstream in _as_list(other):
            _link(self, downstream)
        return other

    def __lshift__(self, other: XComArg | Iterable[XComArg]) -> XComArg | Iterable[XComArg]:
        for upstream in _as_list(other):
            _link(upstream, self)
        return other

    def __rrshift__(self, other: Iterable[XComArg]) -> XComArg:
        for upstream in _as_list(other):
            _link(upstream, self)
        return self

    def __rlshift__(self, other: Iterable[XComArg]) -> XComArg:
        for downstream in _as_list(other):
            _link(self, downstream)
        return self

    def __repr__(self) -> str:
        return f"XComArg({self.task.task_id!r})"


def _as_list(value: Any) -> list[XComArg]:
    items = list(value) if isinstance(value, list | tuple | set) else [value]
    for item in items:
        if not isinstance(item, XComArg):
            raise DagDefinitionError(
                f"`>>` and `<<` connect tasks, not {type(item).__name__}: call the @task "
                "function and use what the call returns."
            )
    return items


def _link(upstream: XComArg, downstream: XComArg) -> None:
    if upstream.task.dag is not downstream.task.dag:
        raise DagDefinitionError(
            f"Task {downstream.task.task_id!r} of DAG {downstream.task.dag.dag_id!r} cannot depend "
            f"on task {upstream.task.task_id!r} of another DAG ({upstream.task.dag.dag_id!r})."
        )
    downstream.task.upstream_ids.add(upstream.task.task_id)


def _find_refs(value: Any) -> list[XComArg]:
    if isinstance(value, XComArg):
        return [value]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _find_refs(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [r for v in value for r in _find_refs(v)]
    return []


def _substitute(value: Any, inputs: dict[str, Any]) -> Any:
    if isinstance(value, XComArg):
        return inputs.get(value.task.task_id)
    if isinstance(value, dict):
        return {k: _substitute(v, inputs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_substitute(v, inputs) for v in value)
    return value


class TaskFunction:
    """What ``@task`` returns: call it inside a DAG body to add a task."""

    def __init__(self, function: Callable[..., Any], kind: TaskKind, options: TaskOptions) -> None:
        self.function = function
        self.kind = kind
        self.options = options
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__
        self.__wrapped__ = function

    def override(self, **changes: Unpack[TaskArguments]) -> TaskFunction:
        """A copy with other options, e.g. ``extract.override(task_id="extract_eu")``."""
        return TaskFunction(self.function, self.kind, self.options.replace(**changes))

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        return add_task(self, args, kwargs, None)

    def partial(self, **kwargs: Any) -> PartialTask:
        """Fix the arguments every mapped instance shares; ``.expand`` then names the mapped one."""
        from weir.mapping import PartialTask

        return PartialTask(self, kwargs)

    def expand(self, **mapped: Any) -> XComArg:
        """Add a mapped task: one instance per element of the list given as the one keyword."""
        return self.partial().expand(**mapped)


def add_task(
    function: TaskFunction,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    mapped: MappedArgument | None,
) -> XComArg:
    """Add a task to the DAG being defined, wired to the tasks whose results it takes."""
    from weir.dag import current_dag

    dag = current_dag()
    if dag is None:
        raise DagDefinitionError(
            f"Task function {function.function.__name__!r} was called outside a DAG: call it "
            "inside the body of a function decorated with @dag."
        )
    task_id = dag.claim_task_id(function.options.task_id, function.function.__name__)
    created = Task(
        task_id=task_id,
        dag=dag,
        function=function.function,
        kind=function.kind,
        options=function.options,
        args=args,
        kwargs=kwargs,
        mapped=mapped,
    )
    sources = [mapped.source] if mapped is not None and mapped.source is not None else []
    for ref in _find_refs((args, kwargs)) + sources:
        _link(ref, XComArg(created))
    dag.add_task(created)
    return XComArg(created)


Decorated = Callable[[Callable[..., Any]], TaskFunction]


class _TaskDecorator:
    """``@task``, ``@task(...)``, ``@task.shell``, ``@task.branch`` and ``@task.sensor``."""

    @overload
    def __call__(self, function: Callable[..., Any], /) -> TaskFunction: ...

    @overload
    def __call__(self, function: None = None, /, **options: Unpack[TaskArguments]) -> Decorated: ...

    def __call__(
        self, function: Callable[..., Any] | None = None, /, **options: Unpack[TaskArguments]
    ) -> TaskFunction | Decorated:
        return _decorate(function, TaskKind.PYTHON, dict(options))

    @overload
    def shell(self, function: Callable[..., str], /) -> TaskFunction: ...

    @overload
    def shell(self, function: None = None, /, **options: Unpack[TaskArguments]) -> Decorated: ...

    def shell(
        self, function: Callable[..., str] | None = None, /, **options: Unpack[TaskArguments]
    ) -> TaskFunction | Decorated:
        """A task whose function returns a shell command; the worker runs it and the last line of
        its standard output is the task's return value (a non-zero exit fails the attempt)."""
        return _decorate(function, TaskKind.SHELL, dict(options))

    @overload
    def branch(self, function: Callable[..., Any], /) -> TaskFunction: ...

    @overload
    def branch(self, function: None = None, /, **options: Unpack[TaskArguments]) -> Decorated: ...

    def branch(
        self, function: Callable[..., Any] | None = None, /, **options: Unpack[TaskArguments]
    ) -> TaskFunction | Decorated:
        """A task that returns the id (or list of ids) of the downstream task(s) to follow; its
        other direct downstream tasks are skipped."""
        return _decorate(function, TaskKind.PYTHON, {**options, "branch": True})

    @overload
    def sensor(self, function: Callable[..., Any], /) -> TaskFunction: ...

    @overload
    def sensor(self, function: None = None, /, **options: Unpack[TaskArguments]) -> Decorated: ...

    def sensor(
        self, function: Callable[..., Any] | None = None, /, **options: Unpack[TaskArguments]
    ) -> TaskFunction | Decorated:
        """A task that waits for a condition without holding a worker slot: the worker calls it
        every ``poke_interval`` seconds until it returns something truthy (its return value, or a
        ``PokeReturnValue``'s ``xcom_value``), and frees the slot in between. Past ``timeout``
        seconds from the first poke it fails, or is skipped with ``soft_fail``."""
        return _decorate(function, TaskKind.PYTHON, {**options, "sensor": True})


def _decorate(
    function: Callable[..., Any] | None, kind: TaskKind, options: dict[str, Any]
) -> TaskFunction | Decorated:
    parsed = TaskOptions.build(options)
    if function is None:
        return lambda f: TaskFunction(f, kind, parsed)
    return TaskFunction(function, kind, parsed)


task = _TaskDecorator()
