"""A webhook's body as a JSON value, its filters, and the run ``conf`` picked out of it.

Bodies are JSON, or a form (``application/x-www-form-urlencoded``); a form whose only field is
``payload`` holding JSON (GitHub's form content type) counts as that JSON. Pointers follow
RFC 6901 (``weir.webhooks.parse_pointer``; the ``jsonpointer`` library is not a dependency, and the
resolver is a dozen lines). Everything kept must be storable in PostgreSQL's JSONB: no NUL
character, no NaN or infinity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from weir.webhooks import contains_nul, parse_pointer

__all__ = ["MISSING", "BadPayload", "map_conf", "parse_payload", "passes_filters", "resolve"]

MISSING: Any = object()
_FORM = "application/x-www-form-urlencoded"


class BadPayload(Exception):
    """The body cannot become a run's conf; the message says why."""


def parse_payload(body: bytes, content_type: str | None) -> Any:
    """The body as a JSON value; an empty body is ``{}`` (a ping carries nothing)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if not body.strip():
        return {}
    value = _parse_form(body) if media_type == _FORM else _parse_json(body)
    if contains_nul(value):
        raise BadPayload("the payload holds a NUL character, which cannot be stored")
    return value


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadPayload(f"the body is not valid JSON ({error})") from None
    except RecursionError:
        raise BadPayload("the JSON body nests too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_form(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadPayload("the body is not a valid UTF-8 url-encoded form") from None
    if len(pairs) == 1 and pairs[0][0] == "payload":
        return _parse_json(pairs[0][1].encode())
    form: dict[str, Any] = {}
    for key, value in pairs:
        if key in form:  # a repeated field becomes the list of its values
            previous = form[key]
            form[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            form[key] = value
    return form


def resolve(document: Any, pointer: str) -> Any:
    """The value ``pointer`` names in ``document``, or ``MISSING`` when there is none."""
    value = document
    for token in parse_pointer(pointer):
        if isinstance(value, Mapping):
            value = value.get(token, MISSING)
        elif isinstance(value, list) and _is_index(token) and int(token) < len(value):
            value = value[int(token)]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _is_index(token: str) -> bool:
    """RFC 6901 array indexes: digits, no leading zero (``-``, past the end, names nothing)."""
    return token.isascii() and token.isdigit() and (token == "0" or not token.startswith("0"))


def passes_filters(payload: Any, filters: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every filter's pointer names a value equal to its ``equals`` (a missing value
    fails). ``True`` equals only ``true``, never ``1``."""
    for entry in filters:
        value = resolve(payload, entry["pointer"])
        expected = entry.get("equals")
        if value is MISSING or not _equal(value, expected):
            return False
    return True


def _equal(value: Any, expected: Any) -> bool:
    # Python's True == 1; JSON's true is no number.
    return isinstance(value, bool) == isinstance(expected, bool) and bool(value == expected)


def map_conf(payload: Any, conf_fields: Mapping[str, str] | None) -> dict[str, Any]:
    """The run's conf: the whole payload (an object as is, anything else as ``{"payload": …}``),
    or each conf key set from its pointer; a pointer that names nothing leaves its key out, so
    the param's default applies (or its absence is reported when the param has none)."""
    if conf_fields is None:
        return dict(payload) if isinstance(payload, dict) else {"payload": payload}
    conf: dict[str, Any] = {}
    for key, pointer in conf_fields.items():
        value = resolve(payload, pointer)
        if value is not MISSING:
            conf[key] = value
    return conf
