"""Webhook payloads: JSON and form bodies, RFC 6901 pointers, filters and the conf mapping."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from app.webhooks.payloads import (
    MISSING,
    BadPayload,
    map_conf,
    parse_payload,
    passes_filters,
    resolve,
)
from weir.errors import DagDefinitionError
from weir.webhooks import Webhook, check_webhooks, parse_pointer

PUSH = {
    "ref": "refs/heads/main",
    "repository": {"full_name": "acme/shop", "topics": ["a", "b"]},
    "a/b": 1,
    "m~n": 2,
    "": "empty key",
    "draft": False,
}


def test_a_json_body_is_parsed_whatever_its_content_type_says() -> None:
    body = json.dumps(PUSH).encode()
    assert parse_payload(body, "application/json; charset=utf-8") == PUSH
    assert parse_payload(body, None) == PUSH


def test_an_empty_body_is_an_empty_payload() -> None:
    assert parse_payload(b"", "application/json") == {}
    assert parse_payload(b"  \n", None) == {}


def test_a_github_form_body_is_its_payload_field_parsed_as_json() -> None:
    body = urlencode({"payload": json.dumps(PUSH)}).encode()
    assert parse_payload(body, "application/x-www-form-urlencoded") == PUSH


def test_a_plain_form_becomes_an_object_and_repeated_fields_lists() -> None:
    body = b"order=17&tag=a&tag=b&tag=c&note="
    assert parse_payload(body, "application/x-www-form-urlencoded") == {
        "order": "17",
        "tag": ["a", "b", "c"],
        "note": "",
    }


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe", None, "not valid JSON"),
        (b'{"n": NaN}', None, "not valid JSON"),
        (b'{"n": Infinity}', None, "not valid JSON"),
        (b'{"a": "nul\\u0000"}', None, "NUL"),
        (b'{"nul\\u0000key": 1}', None, "NUL"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nests too deeply"),
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded", "not valid JSON"),
        (b"a=%00", "application/x-www-form-urlencoded", "NUL"),
        (b"a=%ff", "application/x-www-form-urlencoded", "UTF-8"),
    ],
)
def test_a_body_that_cannot_become_a_conf_is_refused(
    body: bytes, content_type: str | None, reason: str
) -> None:
    with pytest.raises(BadPayload, match=reason):
        parse_payload(body, content_type)


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", PUSH),
        ("/ref", "refs/heads/main"),
        ("/repository/full_name", "acme/shop"),
        ("/repository/topics/1", "b"),
        ("/a~1b", 1),
        ("/m~0n", 2),
        ("/", "empty key"),
        ("/draft", False),
    ],
)
def test_pointers_resolve_as_rfc_6901_says(pointer: str, expected: Any) -> None:
    assert resolve(PUSH, pointer) == expected


@pytest.mark.parametrize(
    "pointer",
    ["/nope", "/ref/x", "/repository/topics/2", "/repository/topics/01", "/repository/topics/-"],
)
def test_a_pointer_to_nothing_is_missing(pointer: str) -> None:
    assert resolve(PUSH, pointer) is MISSING


@pytest.mark.parametrize("pointer", ["ref", "/a~2", "/x~", "/x\x00", "/" + "a" * 1000])
def test_a_malformed_pointer_is_refused(pointer: str) -> None:
    with pytest.raises(ValueError):
        parse_pointer(pointer)


def test_filters_all_have_to_hold() -> None:
    main = [{"pointer": "/ref", "equals": "refs/heads/main"}]
    assert passes_filters(PUSH, main)
    assert passes_filters(PUSH, [*main, {"pointer": "/draft", "equals": False}])
    assert not passes_filters(PUSH, [*main, {"pointer": "/draft", "equals": True}])
    assert not passes_filters({"ref": "refs/heads/dev"}, main)
    assert not passes_filters({}, main)  # a missing value fails
    assert passes_filters(PUSH, [])


def test_filters_compare_json_values_not_python_truthiness() -> None:
    assert not passes_filters({"flag": 1}, [{"pointer": "/flag", "equals": True}])
    assert not passes_filters({"flag": True}, [{"pointer": "/flag", "equals": 1}])
    assert passes_filters({"n": 2}, [{"pointer": "/n", "equals": 2.0}])
    assert passes_filters({"v": None}, [{"pointer": "/v", "equals": None}])
    assert not passes_filters({}, [{"pointer": "/v", "equals": None}])


def test_the_whole_payload_is_the_conf_without_conf_fields() -> None:
    assert map_conf(PUSH, None) == PUSH
    assert map_conf([1, 2], None) == {"payload": [1, 2]}


def test_conf_fields_pick_values_and_leave_missing_ones_out() -> None:
    fields = {"branch": "/ref", "repo": "/repository/full_name", "pr": "/pull_request/number"}
    assert map_conf(PUSH, fields) == {"branch": "refs/heads/main", "repo": "acme/shop"}


# --- the SDK's Webhook -----------------------------------------------------------------------


def test_a_webhook_serializes_both_filter_forms_alike() -> None:
    as_mapping = Webhook("push", conf={"branch": "/ref"}, filters={"/ref": "refs/heads/main"})
    as_list = Webhook(
        "push", conf={"branch": "/ref"}, filters=[{"pointer": "/ref", "equals": "refs/heads/main"}]
    )
    assert (
        as_mapping.to_dict()
        == as_list.to_dict()
        == {
            "name": "push",
            "signature": "github",
            "conf_fields": {"branch": "/ref"},
            "filters": [{"pointer": "/ref", "equals": "refs/heads/main"}],
        }
    )
    assert json.loads(json.dumps(as_mapping.to_dict())) == as_mapping.to_dict()


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        (Webhook("has.dot"), "name"),
        (Webhook(""), "name"),
        (Webhook("x", signature="md5"), "signature"),  # type: ignore[arg-type]
        (Webhook("x", conf={"branch": "ref"}), "conf.branch"),
        (Webhook("x", conf={"branch": "/a~9"}), "conf.branch"),
        (Webhook("x", conf=["/ref"]), "conf"),  # type: ignore[arg-type]
        (Webhook("x", filters={"ref": "main"}), r"filters\[0\].pointer"),
        (Webhook("x", filters={"/ref": object()}), r"filters\[0\].equals"),
        (Webhook("x", filters={"/ref": "nul\x00"}), r"filters\[0\].equals"),
        (Webhook("x", filters=[{"equals": 1}]), r"filters\[0\]"),
    ],
)
def test_bad_webhook_options_are_an_import_error_naming_dag_and_file(
    webhook: Webhook, message: str
) -> None:
    where = "DAG 'orders' in /dags/orders.py"
    with pytest.raises(DagDefinitionError, match=message) as refused:
        check_webhooks(where, [webhook])
    assert str(refused.value).startswith(where)


def test_two_webhooks_of_one_dag_need_two_names() -> None:
    with pytest.raises(DagDefinitionError, match="two webhooks are named 'push'"):
        check_webhooks("DAG 'orders' in x.py", [Webhook("push"), Webhook("push")])


def test_only_webhooks_are_triggers() -> None:
    with pytest.raises(DagDefinitionError, match=r"only weir\.Webhook"):
        check_webhooks("DAG 'orders' in x.py", ["push"])
