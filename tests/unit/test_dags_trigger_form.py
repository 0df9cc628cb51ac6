"""The DAGs page's trigger form: one input per param, and what was typed turned into ``conf``."""

from __future__ import annotations

from typing import Any

from app.dashboard.pages.dags_trigger import conf_from_form, conf_from_text, param_fields
from weir.params import Param, serialize_params

PARAMS: dict[str, Any] = serialize_params(
    {
        "rows": Param(3, type="integer", minimum=1, description="rows to load"),
        "ratio": Param(0.5, type="number"),
        "dry": Param(True, type="boolean"),
        "mode": Param("fast", enum=["fast", "safe", 3]),
        "label": Param(type="string"),
        "extra": Param({"a": 1}, type="object"),
        "limit": Param(None, type=["integer", "null"]),
    }
)


def test_each_param_gets_the_input_its_schema_calls_for_with_its_default() -> None:
    fields = {f.name: f for f in param_fields(PARAMS)}
    assert list(fields) == sorted(PARAMS)
    kinds = {name: (f.kind, f.value) for name, f in fields.items()}
    assert kinds == {
        "rows": ("integer", "3"),
        "ratio": ("number", "0.5"),
        "dry": ("boolean", "on"),
        "mode": ("enum", '"fast"'),
        "label": ("string", ""),
        "extra": ("json", '{\n  "a": 1\n}'),
        "limit": ("integer", ""),
    }
    assert fields["mode"].choices == [('"fast"', "fast"), ('"safe"', "safe"), ("3", "3")]
    assert fields["label"].required and not fields["rows"].required
    assert fields["limit"].nullable and fields["rows"].minimum == 1
    assert fields["rows"].description == "rows to load"


def test_typed_values_become_json_values() -> None:
    form = {
        "param.rows": " 7 ", "param.ratio": "2", "param.mode": "3", "param.label": "",
        "param.extra": '{"b": [1]}', "param.limit": "",
    }  # fmt: skip
    conf, errors = conf_from_form(PARAMS, form)
    assert errors == {}
    assert conf == {
        "rows": 7, "ratio": 2, "dry": False, "mode": 3, "label": "", "extra": {"b": [1]},
        "limit": None,
    }  # fmt: skip


def test_values_that_do_not_convert_are_left_for_the_schema_to_judge() -> None:
    conf, errors = conf_from_form(
        PARAMS, {"param.rows": "seven", "param.ratio": "", "param.dry": "on"}
    )
    assert conf == {"rows": "seven", "dry": True}  # an empty number: its default applies
    assert errors == {}


def test_what_cannot_be_stored_is_refused_by_field() -> None:
    form = {"param.extra": "{oops", "param.label": "a\x00b", "param.ratio": "nan"}
    conf, errors = conf_from_form(PARAMS, form)
    assert "is not valid JSON" in errors["extra"][0]
    assert errors["label"] == ["cannot contain NUL characters"]
    assert errors["ratio"] == ["must be a finite number (not NaN or infinity)"]
    assert "extra" not in conf and "label" not in conf


def test_fields_shown_again_keep_what_was_typed_and_their_errors() -> None:
    fields = {f.name: f for f in param_fields(PARAMS, {"param.rows": "0"}, {"rows": ["too small"]})}
    assert (fields["rows"].value, fields["rows"].errors) == ("0", ["too small"])
    assert fields["dry"].value == "", "an unchecked box stays unchecked"


def test_free_form_conf_must_be_a_json_object() -> None:
    assert conf_from_text("  ") == ({}, [])
    assert conf_from_text('{"a": 1}') == ({"a": 1}, [])
    assert conf_from_text("[1]")[1] == ['must be a JSON object, such as {"rows": 3}']
    assert "is not valid JSON" in conf_from_text("{")[1][0]
    assert conf_from_text('{"a": "\\u0000"}')[1] == ["cannot contain NUL characters"]
