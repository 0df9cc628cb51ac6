"""The OpenAPI document: committed as ``docs/openapi.json``, and shaped for generated clients.

Each rule lists every operation that breaks it, so one run names all the offenders.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.api.openapi_export import DEFAULT_OUTPUT, REGENERATE_COMMAND, render, served_document

REPOSITORY = Path(__file__).resolve().parents[2]
OPERATION_ID = re.compile(r"^[a-z]+(-[a-z]+)+$")
"""``<resource>-<verb>``: ``dags-list``, ``task-instances-clear``."""
PROBLEM_JSON = "application/problem+json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

Operation = tuple[str, dict[str, Any]]
"""``("PATCH /api/v1/dags/{dag_id}", the operation object)``."""


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return served_document()


def _operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, item in sorted(document["paths"].items()):
        for method, operation in sorted(item.items()):
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def _offenders(found: list[str], rule: str) -> str:
    return f"{len(found)} operation(s) break the rule {rule!r}:\n  " + "\n  ".join(found)


def test_the_committed_document_is_the_served_one(document: dict[str, Any]) -> None:
    committed = REPOSITORY / DEFAULT_OUTPUT
    assert committed.exists(), f"{DEFAULT_OUTPUT} is missing: run `{REGENERATE_COMMAND}`."
    assert committed.read_text(encoding="utf-8") == render(document), (
        f"{DEFAULT_OUTPUT} differs from what the API serves: run `{REGENERATE_COMMAND}` and "
        "commit the result."
    )


def test_operation_ids_are_unique_and_read_as_resource_verb(document: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    bad: list[str] = []
    for label, operation in _operations(document):
        operation_id = operation.get("operationId", "")
        if not OPERATION_ID.match(operation_id):
            bad.append(f"{label}: operationId {operation_id!r} is not <resource>-<verb>")
        elif operation_id in seen:
            bad.append(f"{label}: operationId {operation_id!r} is also {seen[operation_id]}")
        seen.setdefault(operation_id, label)
    assert not bad, _offenders(bad, "a unique operationId <resource>-<verb>")


def test_every_operation_has_a_tag_and_a_description(document: dict[str, Any]) -> None:
    # FastAPI derives a summary from the function name; the description is the route's docstring.
    bad = [
        f"{label}: {', '.join(m for m in ('tags', 'description') if not operation.get(m))}"
        for label, operation in _operations(document)
        if not operation.get("tags") or not operation.get("description")
    ]
    assert not bad, _offenders(bad, "a tag and a description (the route's docstring)")


def test_json_bodies_are_named_schemas_with_examples(document: dict[str, Any]) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    bad: list[str] = []
    for label, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        for media_type, body in content.items():
            if "json" not in media_type:
                continue
            ref = body.get("schema", {}).get("$ref", "")
            name = ref.rpartition("/")[2]
            if not ref:
                bad.append(f"{label}: request body {media_type} is an inline schema")
            elif not schemas.get(name, {}).get("examples"):
                bad.append(f"{label}: request body {name} has no examples")
    assert not bad, _offenders(bad, "a request body is a named schema with examples")


def test_successful_json_answers_are_named_schemas(document: dict[str, Any]) -> None:
    bad = [
        f"{label}: {status} {media_type} is not a $ref to a named schema"
        for label, operation in _operations(document)
        for status, response in operation.get("responses", {}).items()
        if status.startswith("2")
        for media_type, content in response.get("content", {}).items()
        if "json" in media_type and "$ref" not in content.get("schema", {})
    ]
    assert not bad, _offenders(bad, "a 2xx JSON answer is a named schema")


def test_declared_errors_are_problem_details(document: dict[str, Any]) -> None:
    # One line per operation (its statuses grouped): one wrong shared setting breaks them all.
    bad: list[str] = []
    for label, operation in _operations(document):
        wrong: dict[str, list[str]] = {}
        for status, response in sorted(operation.get("responses", {}).items()):
            if status.startswith("4"):
                content = response.get("content", {})
                ref = content.get(PROBLEM_JSON, {}).get("schema", {}).get("$ref", "")
                if set(content) != {PROBLEM_JSON} or not ref.endswith("/Problem"):
                    shape = {media: "$ref" in c.get("schema", {}) for media, c in content.items()}
                    wrong.setdefault(f"media types (has schema) {shape}", []).append(status)
        bad += [f"{label}: {', '.join(codes)} are {why}" for why, codes in wrong.items()]
    assert not bad, _offenders(
        bad, f"every declared 4xx answer is only {PROBLEM_JSON}, with the Problem schema"
    )


def test_public_path_parameters_are_strings(document: dict[str, Any]) -> None:
    # The REST convention; /execution/v1 names task instances by their integer id on purpose.
    bad = [
        f"{label}: path parameter {parameter['name']!r} is {parameter.get('schema')}"
        for label, operation in _operations(document)
        if label.split(" ", 1)[1].startswith("/api/v1/")
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "path" and parameter.get("schema", {}).get("type") != "string"
    ]
    assert not bad, _offenders(bad, "/api/v1 path parameters are strings")


def test_public_operations_declare_their_security(document: dict[str, Any]) -> None:
    assert document.get("components", {}).get("securitySchemes"), "no security scheme declared"
    bad = [
        label
        for label, operation in _operations(document)
        if label.split(" ", 1)[1].startswith("/api/v1/") and "security" not in operation
    ]
    assert not bad, _offenders(
        bad, "every /api/v1 operation declares its security (`[]` when it is public)"
    )
