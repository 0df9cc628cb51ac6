"""``Param``: a run parameter with a default and a JSON-schema type. A trigger's ``conf`` is
validated against the DAG's params (issue 3, item 12); tasks read the merged values."""

from __future__ import annotations

from typing import Any

__all__ = ["Param", "serialize_params"]

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
