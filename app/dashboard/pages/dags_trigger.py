"""Triggering a DAG from the dashboard: a form built from the DAG's params, checked with the same
``weir.params`` rules as ``POST /api/v1/dags/{dag_id}/runs``, errors shown next to each field.

Each param gets the input its JSON schema calls for: a number field for ``integer``/``number``,
a checkbox for ``boolean``, a select for an ``enum``, a text field for ``string`` and a JSON
text area for anything else. What a person types is converted as far as it can be and then left
to the schema to judge, so the messages are the same as the API's. A DAG without params gets a
plain confirmation with an optional JSON ``conf``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Service, Session
from app.audit import record
from app.conf_size import conf_size_error
from app.dags_service import find_dag
from app.dashboard.sessions import UiOperator
from app.dashboard.templating import render
from app.db.models import Dag
from app.scheduler.dag_runs import RunRequest, create_run
from app.scheduler.wakeup import wake_scheduler
from app.state import ServiceState
from weir.params import conf_errors

__all__ = ["DagIdPath", "ParamField", "conf_from_form", "conf_from_text", "param_fields", "router"]

router = APIRouter(include_in_schema=False)

DagIdPath = Annotated[str, Path(min_length=1, max_length=250, pattern=r"^[^\x00]+$")]
FIELD_PREFIX = "param."
CONF_FIELD = "conf"
MAX_CONF_CHARS = 64 * 1024
_SIMPLE_KINDS = {"integer", "number", "boolean", "string"}


@dataclass(frozen=True, slots=True)
class ParamField:
    """One input of the form (``partials/dags_trigger.html``). ``value`` is the text the input
    shows (JSON for ``enum`` options and ``json`` areas); ``choices`` are ``(JSON, label)``."""

    name: str
    kind: str
    value: str
    description: str | None = None
    required: bool = False
    nullable: bool = False
    choices: list[tuple[str, str]] = field(default_factory=list)
    minimum: Any = None
    maximum: Any = None
    errors: list[str] = field(default_factory=list)

    @property
    def input_name(self) -> str:
        return FIELD_PREFIX + self.name


def _kind(schema: Mapping[str, Any]) -> tuple[str, bool]:
    """The input for a schema, and whether it accepts null (an empty input means null)."""
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return "enum", None in schema["enum"]
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared]
    nullable = "null" in types
    rest = [t for t in types if t != "null"]
    if len(rest) == 1 and rest[0] in _SIMPLE_KINDS:
        return rest[0], nullable
    return "json", nullable


def _shown(kind: str, value: Any) -> str:
    if kind == "boolean":
        return "on" if value else ""
    if kind in ("enum", "json"):
        return json.dumps(value, indent=2 if kind == "json" else None)
    return "" if value is None else str(value)


def param_fields(
    params: Mapping[str, Mapping[str, Any]],
    submitted: Mapping[str, str] | None = None,
    errors: Mapping[str, list[str]] | None = None,
) -> list[ParamField]:
    """The form's fields, by name (PostgreSQL's JSONB keeps no key order, so the order written in
    the DAG file is lost): defaults on first show, what was typed when shown again with errors."""
    fields = []
    for name, param in sorted(params.items()):
        schema = param.get("schema") or {}
        kind, nullable = _kind(schema)
        if submitted is None:
            value = _shown(kind, param["default"]) if "default" in param else ""
        elif kind == "boolean":
            value = "on" if FIELD_PREFIX + name in submitted else ""
        else:
            value = submitted.get(FIELD_PREFIX + name, "")
        choices = [(json.dumps(c), str(c)) for c in schema.get("enum") or []]
        fields.append(
            ParamField(
                name=name, kind=kind, value=value, description=schema.get("description"),
                required="default" not in param, nullable=nullable, choices=choices,
                minimum=schema.get("minimum"), maximum=schema.get("maximum"),
                errors=list((errors or {}).get(name, [])),
            )
        )  # fmt: skip
    return fields


def _converted(kind: str, raw: str) -> Any:
    """What a person meant by ``raw``; left as text where it does not convert, so that the
    schema's own message ("'x' is not of type 'integer'") says what is wrong."""
    converters: dict[str, Any] = {"integer": int, "number": float, "enum": json.loads}
    convert = converters.get(kind)
    if convert is None:
        return raw
    try:
        value = convert(raw.strip())
    except ValueError:
        return raw
    if kind == "number" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON (PostgreSQL refuses NaN and NUL), if it cannot."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        return "must be a finite number (not NaN or infinity)"
    if "\\u0000" in text:
        return "cannot contain NUL characters"
    if len(text) > MAX_CONF_CHARS:
        return f"is too long (at most {MAX_CONF_CHARS} characters)"
    return None


def conf_from_form(
    params: Mapping[str, Mapping[str, Any]], form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``conf`` from the submitted fields, and the errors found before the schemas are asked.
    An empty field is left out (its default applies) unless the param accepts null."""
    conf: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, param in params.items():
        kind, nullable = _kind(param.get("schema") or {})
        raw = form.get(FIELD_PREFIX + name)
        if kind == "boolean":
            conf[name] = raw is not None
            continue
        if raw is None or (not raw.strip() and kind != "string"):
            if raw is not None and nullable:
                conf[name] = None
            continue
        if kind == "json":
            try:
                value = json.loads(raw)
            except ValueError as error:
                errors[name] = [f"is not valid JSON: {error}"]
                continue
        else:
            value = _converted(kind, raw)
        problem = _unstorable(value)
        if problem:
            errors[name] = [problem]
        else:
            conf[name] = value
    return conf, errors


def conf_from_text(text: str) -> tuple[dict[str, Any], list[str]]:
    """The optional free-form ``conf`` of a DAG without params: a JSON object, or nothing."""
    if not text.strip():
        return {}, []
    try:
        conf = json.loads(text)
    except ValueError as error:
        return {}, [f"is not valid JSON: {error}"]
    if not isinstance(conf, dict):
        return {}, ['must be a JSON object, such as {"rows": 3}']
    problem = _unstorable(conf)
    return (conf, []) if problem is None else ({}, [problem])


def _schema_errors(
    params: Mapping[str, Mapping[str, Any]], conf: dict[str, Any]
) -> dict[str, list[str]]:
    """``weir.params``' errors by param name (``conf.rows['a']`` belongs to ``rows``)."""
    found: dict[str, list[str]] = {}
    for error in conf_errors({name: dict(param) for name, param in params.items()}, conf):
        for name in params:
            prefix = f"conf.{name}"
            if error["field"] == prefix or error["field"].startswith(prefix + "["):
                where = error["field"].removeprefix(prefix)
                message = f"{where}: {error['message']}" if where else error["message"]
                found.setdefault(name, []).append(message)
                break
    return found


async def _params(session: AsyncSession, service: ServiceState, dag: Dag) -> dict[str, Any]:
    structure = await service.versions.get(session, dag.version_id)
    params: dict[str, Any] = structure.options.get("params") or {}
    return params


@router.get("/dags/{dag_id}/trigger", response_class=HTMLResponse)
async def trigger_form(
    dag_id: DagIdPath, request: Request, session: Session, service: Service, ui: UiOperator
) -> HTMLResponse:
    """The form, for the page's trigger dialog."""
    dag = await find_dag(session, dag_id)
    fields = param_fields(await _params(session, service, dag))
    return render(
        request, "partials/dags_trigger.html", ui, dag=dag, fields=fields, conf="", conf_errors=[]
    )


@router.post("/dags/{dag_id}/trigger", response_class=HTMLResponse)
async def trigger_run(
    dag_id: DagIdPath, request: Request, session: Session, service: Service, ui: UiOperator
) -> HTMLResponse:
    """Start a run; a 422 shows the form again with each field's errors."""
    dag = await find_dag(session, dag_id)
    params = await _params(session, service, dag)
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    if params:
        conf, errors = conf_from_form(params, form)
        for name, messages in _schema_errors(params, conf).items():
            errors.setdefault(name, messages)
        text_errors: list[str] = []
    else:
        conf, text_errors = conf_from_text(form.get(CONF_FIELD, ""))
        errors = {}
    if not errors and not text_errors:
        too_large = conf_size_error(conf, service.settings.max_conf_bytes)
        text_errors = [] if too_large is None else [too_large]
    if errors or text_errors:
        return render(
            request, "partials/dags_trigger.html", ui, status_code=422, dag=dag,
            fields=param_fields(params, form, errors), conf=form.get(CONF_FIELD, ""),
            conf_errors=text_errors,
        )  # fmt: skip
    now = service.clock.now()
    run, _ = await create_run(session, RunRequest(dag_id=dag_id, conf=conf), service.versions, now)
    await record(
        session, ui.principal, "run.trigger", f"{dag_id}/{run.run_id}", now, origin="dashboard"
    )
    await wake_scheduler(session)
    response = render(request, "partials/dags_trigger_done.html", ui, dag=dag, run=run)
    response.headers["HX-Retarget"] = "#toasts"
    response.headers["HX-Reswap"] = "beforeend"
    response.headers["HX-Trigger"] = "weir:run-triggered"
    return response
