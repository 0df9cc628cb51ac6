"""``partial`` and ``expand``: the SDK side of dynamic task mapping.

``count.partial(header=True).expand(path=list_files())`` adds one task whose instances the scheduler
creates at run time, one per element (``app/scheduler/mapping.py``). Everything that could not work
at run time is refused here, at import time, with how to fix it: Weir maps over exactly one
keyword, given either an upstream task's result or a literal list of JSON values.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

from weir.errors import DagDefinitionError
from weir.task import TaskFunction, XComArg, add_task

__all__ = ["MappedArgument", "PartialTask"]


@dataclasses.dataclass(frozen=True, slots=True)
class MappedArgument:
    """The argument a mapped task is expanded over: an upstream task's list, or a literal one."""

    arg: str
    source: XComArg | None
    literal: list[Any] | None

    def to_dict(self) -> dict[str, Any]:
        source = self.source.task.task_id if self.source is not None else None
        return {"arg": self.arg, "source": source, "literal": self.literal}


class PartialTask:
    """What ``TaskFunction.partial`` returns: a task waiting for the argument to expand over."""

    def __init__(self, function: TaskFunction, kwargs: dict[str, Any]) -> None:
        self.function = function
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> XComArg:
        """Add the mapped task; refuses at import time what could not work at run time."""
        mapping = _check_expand(self.function, self.kwargs, mapped)
        return add_task(self.function, (), self.kwargs, mapping)


def _check_expand(
    function: TaskFunction, fixed: dict[str, Any], mapped: dict[str, Any]
) -> MappedArgument:
    name = function.function.__name__
    if len(mapped) != 1:
        raise DagDefinitionError(
            f"{name}.expand() takes exactly one keyword argument, the one to map over; got "
            f"{sorted(mapped) or 'none'}. Pass the others with {name}.partial(...)."
        )
    if function.options.branch:
        raise DagDefinitionError(f"Branch task {name!r} cannot be mapped: a branch chooses once.")
    ((arg, value),) = mapped.items()
    if arg in fixed:
        raise DagDefinitionError(
            f"{name}: argument {arg!r} is given to both .partial() and .expand(); give it once."
        )
    try:
        inspect.signature(function.function).bind_partial(**fixed, **mapped)
    except TypeError as error:
        raise DagDefinitionError(f"{name}.partial(...).expand(...): {error}.") from None
    if isinstance(value, XComArg):
        return MappedArgument(arg, value, None)
    if isinstance(value, list | tuple) and _is_json(value):
        return MappedArgument(arg, None, list(value))
    raise DagDefinitionError(
        f"{name}.expand({arg}=...) needs the result of an upstream task call or a literal list of "
        f"JSON values, not {type(value).__name__}."
    )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
