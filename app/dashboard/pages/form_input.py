"""Reading the dashboard's HTML forms into the same pydantic models the REST API validates.

A form posts strings; these helpers turn them into the values a JSON body would carry (an empty
field is "not given") and map a ``ValidationError`` to ``InvalidRequest``, which the dashboard
shows as a toast. Messages name the field and the rule, never the value sent (it may be secret).
A successful form answers its fragment with ``ok_toast`` appended, which htmx moves to
``#toasts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.dashboard.templating import templates
from weir.errors import InvalidRequest

__all__ = ["form_fields", "ok_toast", "validated"]

M = TypeVar("M", bound=BaseModel)


async def form_fields(request: Request) -> dict[str, str]:
    """The form's text fields as sent (a password may hold spaces); blank ones left out."""
    form = await request.form()
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, str) and name != "csrf_token" and value.strip():
            fields[name] = value
    return fields


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """``model`` from ``data``, or ``InvalidRequest`` listing each field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [
            {"field": ".".join(str(part) for part in e["loc"]) or "form", "message": e["msg"]}
            for e in error.errors(include_input=False, include_url=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidRequest(f"Please correct the form. {summary}", errors=problems) from error


def ok_toast(title: str) -> str:
    """An out-of-band toast saying a form did what it was asked, to append to an answer."""
    toast = templates.get_template("partials/toast.html").render(
        title=title, detail=None, kind="ok"
    )
    return f'<div hx-swap-oob="beforeend:#toasts">{toast}</div>'
