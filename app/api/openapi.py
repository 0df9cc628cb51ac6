"""The OpenAPI document's security: a bearer scheme, and on each operation the role it needs.

The role is read from the ``RoleRequirement`` the route really depends on (``Viewer``,
``Operator``, ``Admin``), never from a hand-kept list, so the document cannot drift from what the
server enforces. Public operations under ``/api/`` (version, the signed webhook trigger) say
``security: []``; the execution API and the dashboard, which use credentials of their own (attempt
tokens, sessions), get no ``security`` at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from app.auth import Role, RoleRequirement

__all__ = [
    "ROLE_EXTENSION",
    "SECURITY_SCHEME",
    "add_security",
    "add_webhook_payload",
    "install_openapi",
    "problems_as_problem_json",
    "required_role",
]

SECURITY_SCHEME = "bearerToken"
ROLE_EXTENSION = "x-weir-role"
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token of a user (`weir tokens create`); it carries the user's role.",
}
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_DENIALS = {
    "401": "No token, or an unknown, revoked or expired one.",
    "403": "The role is too low.",
}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _dependants(child)


def required_role(route: APIRoute | RouteContext) -> Role | None:
    """The highest role any dependency of ``route`` demands, or ``None`` if it needs no token.

    For an included route this is its effective dependant (with the dependencies of the routers
    that include it): the same tree FastAPI resolves for each request.
    """
    dependant: Dependant = route.dependant
    roles = [d.call.role for d in _dependants(dependant) if isinstance(d.call, RoleRequirement)]
    return max(roles, key=list(Role).index) if roles else None


def _mark(operation: dict[str, Any], role: Role | None, has_problem_schema: bool) -> None:
    if role is None:  # public: say so explicitly, as OpenAPI's empty requirement list does
        operation.setdefault("security", [])
        return
    operation["security"] = [{SECURITY_SCHEME: []}]
    operation[ROLE_EXTENSION] = role.value
    if not has_problem_schema:
        return
    responses = operation.setdefault("responses", {})
    for status, description in _DENIALS.items():
        responses.setdefault(
            status,
            {"description": description,
             "content": {"application/problem+json": {"schema": _PROBLEM}}},
        )  # fmt: skip


def add_security(document: dict[str, Any], app: FastAPI) -> None:
    """Add the bearer scheme and mark every operation (in place): those that need a token with
    the scheme and their role; public ones under ``/api/`` with ``security: []``."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = _BEARER
    has_problem_schema = "Problem" in components.get("schemas", {})
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        role = required_role(route)
        if role is None and not (route.path_format or "").startswith("/api/"):
            continue  # the execution API and the dashboard have credentials of their own
        operations = document.get("paths", {}).get(route.path_format or "", {})
        for method in route.methods or ():
            if (operation := operations.get(method.lower())) is not None:
                _mark(operation, role, has_problem_schema)


WEBHOOK_PAYLOAD = {
    "title": "WebhookPayload",
    "type": "object",
    "additionalProperties": True,
    "description": (
        "Whatever the sending system posts (JSON, or a url-encoded form), signed as it is sent; "
        "the hook's conf fields and filters pick from it by JSON pointer."
    ),
    "examples": [{"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}}],
}
"""The webhook trigger reads its body raw (to check the signature over the exact bytes), so the
body's schema is declared here rather than derived from a model."""


def add_webhook_payload(document: dict[str, Any]) -> None:
    document.setdefault("components", {}).setdefault("schemas", {})["WebhookPayload"] = (
        WEBHOOK_PAYLOAD
    )


def problems_as_problem_json(document: dict[str, Any]) -> None:
    """Declare error answers as ``application/problem+json`` only, as they are sent.

    FastAPI files a response model under ``application/json`` and leaves the media type we add
    empty; move the schema where the answers really are (RFC 9457).
    """
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if not status.startswith(("4", "5")) or "application/json" not in content:
                    continue
                schema = content.pop("application/json").get("schema", _PROBLEM)
                content["application/problem+json"] = {"schema": schema}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) carry the security marks.

    FastAPI caches the document and rebuilds it when routes change; marking is idempotent, so
    each call marks whatever it returns.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        add_security(document, app)
        add_webhook_payload(document)
        problems_as_problem_json(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
