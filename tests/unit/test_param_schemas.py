"""Params: a trigger's conf checked against each param's JSON schema, and the merged values."""

from __future__ import annotations

from typing import Any

import pytest

from weir.errors import InvalidRequest
from weir.params import Param, check_conf, conf_errors, merge_params, serialize_params

PARAMS = serialize_params(
    {
        "rows": Param(10, type="integer", minimum=1),
        "table": Param(type="string", enum=["orders", "customers"]),
        "options": Param(
            {"dry_run": False}, type="object", properties={"dry_run": {"type": "boolean"}}
        ),
        "note": Param("any value"),
    }
)


def test_a_valid_conf_has_no_errors_and_merges_over_the_defaults() -> None:
    conf = {"table": "orders", "rows": 5, "extra": "kept in conf only"}

    assert conf_errors(PARAMS, conf) == []
    assert merge_params(PARAMS, conf) == {
        "rows": 5,
        "table": "orders",
        "options": {"dry_run": False},
        "note": "any value",
    }


@pytest.mark.parametrize(
    ("conf", "field", "fragment"),
    [
        ({"table": "orders", "rows": "five"}, "conf.rows", "is not of type 'integer'"),
        ({"table": "orders", "rows": 0}, "conf.rows", "less than the minimum of 1"),
        ({"table": "invoices"}, "conf.table", "is not one of"),
        (
            {"table": "orders", "options": {"dry_run": "yes"}},
            "conf.options['dry_run']",
            "is not of type 'boolean'",
        ),
    ],
)
def test_a_value_breaking_its_schema_is_named(
    conf: dict[str, Any], field: str, fragment: str
) -> None:
    errors = conf_errors(PARAMS, conf)

    assert [error["field"] for error in errors] == [field]
    assert fragment in errors[0]["message"]


def test_a_param_without_default_must_be_given() -> None:
    errors = conf_errors(PARAMS, {})

    assert errors == [
        {
            "field": "conf.table",
            "message": "is required: this param has no default, so the trigger must set it",
        }
    ]


def test_check_conf_raises_an_invalid_request_carrying_the_field_errors() -> None:
    with pytest.raises(InvalidRequest, match=r"conf\.rows") as raised:
        check_conf(PARAMS, {"table": "orders", "rows": -1})

    assert raised.value.errors is not None
    assert raised.value.errors[0]["field"] == "conf.rows"


def test_a_dag_without_params_accepts_any_conf() -> None:
    check_conf({}, {"anything": [1, 2]})


def test_importing_params_does_not_import_jsonschema() -> None:
    import subprocess
    import sys

    code = "import sys, weir.params; print('jsonschema' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert output.stdout.strip() == "False"
