"""``Param``: a run parameter with a default and a JSON-schema type. A trigger's ``conf`` is
validated against the DAG's params (issue 3, item 12); tasks read the merged values."""

from __future__ import annotations

from typing import Any

__all__ = ["Param", "merge_params", "serialize_params"]

_NO_DEFAULT: Any = object()


class Param:
    """``Param(10, type="integer", minimum=1, description="rows to load")``."""

    def __init__(self, default: Any = _NO_DEFAULT, **schema: Any) -> None:
        self.default = default
        self.schema = schema

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        serialized: dict[str, Any] = {"schema": self.schema}
        if self.has_default:
            serialized["default"] = self.default
        return serialized


def serialize_params(params: dict[str, Param]) -> dict[str, dict[str, Any]]:
    return {name: param.to_dict() for name, param in params.items()}


def merge_params(serialized: dict[str, dict[str, Any]], conf: dict[str, Any]) -> dict[str, Any]:
    """The values a task sees: each param's default, overridden by the trigger's ``conf``."""
    merged = {name: p["default"] for name, p in serialized.items() if "default" in p}
    merged.update({name: value for name, value in conf.items() if name in serialized})
    return merged
