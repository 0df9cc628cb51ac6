"""``Param``: a run parameter with a default and a JSON-schema type. A trigger's ``conf`` is
validated against the DAG's params (issue 3, item 12); tasks read the merged values.

``jsonschema`` is imported only when a conf is validated, so a DAG file's import stays light.
Keys of ``conf`` that name no param are allowed (``conf`` is free-form, as in Airflow) and reach
tasks through ``context.conf``; only declared params appear in ``context.params``.
"""

from __future__ import annotations

from typing import Any

from weir.errors import InvalidRequest

__all__ = ["Param", "check_conf", "conf_errors", "merge_params", "serialize_params"]

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


def conf_errors(
    serialized: dict[str, dict[str, Any]], conf: dict[str, Any]
) -> list[dict[str, str]]:
    """What is wrong with ``conf`` for these params: ``{"field": "conf.<name>", "message": …}``
    for each param whose merged value breaks its schema or that has neither value nor default."""
    import jsonschema  # type: ignore[import-untyped]  # lazily: see the module docstring

    errors: list[dict[str, str]] = []
    for name, param in serialized.items():
        field = f"conf.{name}"
        if name in conf:
            value = conf[name]
        elif "default" in param:
            value = param["default"]
        else:
            message = "is required: this param has no default, so the trigger must set it"
            errors.append({"field": field, "message": message})
            continue
        validator = jsonschema.Draft202012Validator(param.get("schema") or {})
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
            where = "".join(f"[{part!r}]" for part in error.path)
            errors.append({"field": field + where, "message": error.message})
    return errors


def check_conf(serialized: dict[str, dict[str, Any]], conf: dict[str, Any]) -> None:
    """Raise ``InvalidRequest`` naming each field at fault unless ``conf`` fits the params."""
    errors = conf_errors(serialized, conf)
    if errors:
        fields = ", ".join(error["field"] for error in errors)
        raise InvalidRequest(
            f"The run's conf does not fit the DAG's params ({fields}); see errors.", errors=errors
        )
