"""``Webhook``: an external trigger a DAG declares, ``@dag(triggers=[Webhook("orders")])``.

Each one becomes ``POST /api/v1/webhooks/<dag_id>.<name>``: a signed call starts a run whose
``conf`` is the payload (or the fields picked by JSON pointers), if the payload passes the filters.
The options are checked when the DAG is built, so a bad pointer is an import error naming the DAG
and its file; the service reads them from the stored DAG version, never from the file. The same
checks guard hooks created through the API, so both kinds obey one set of rules.

Standard library only: a DAG file's ``import weir`` stays light.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from weir.errors import DagDefinitionError

__all__ = [
    "MAX_CONF_FIELDS",
    "MAX_FILTERS",
    "NAME_PATTERN",
    "SIGNATURES",
    "Webhook",
    "check_webhooks",
    "contains_nul",
    "parse_pointer",
]

SIGNATURES = ("github", "timestamped")
# No dot in a name: the hook id is "<dag_id>.<name>" and DAG ids may hold dots themselves.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
_CONF_KEY_PATTERN = re.compile(r"^[^\x00]{1,250}$")
MAX_POINTER_LENGTH = 1000
MAX_CONF_FIELDS = 100
MAX_FILTERS = 50

Signature = Literal["github", "timestamped"]


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 JSON pointer (``"/a~1b/0"`` → ``["a/b", "0"]``);
    ``""`` is the whole document. ``ValueError`` says what is wrong with a malformed one."""
    if not isinstance(pointer, str):
        raise ValueError(f"a JSON pointer is a string, not {type(pointer).__name__}")
    if len(pointer) > MAX_POINTER_LENGTH or "\x00" in pointer:
        raise ValueError(f"a JSON pointer has at most {MAX_POINTER_LENGTH} characters and no NUL")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with '/' (or be '' for everything)")
    if re.search(r"~(?![01])", pointer):
        raise ValueError(f"JSON pointer {pointer!r} has a '~' not followed by 0 or 1")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


class Webhook:
    """``Webhook("orders", signature="github", conf={"order": "/order/id"},
    filters={"/ref": "refs/heads/main"})``.

    ``signature``: ``"github"`` (``X-Hub-Signature-256``) or ``"timestamped"``
    (``X-Weir-Delivery`` + ``X-Weir-Timestamp`` + ``X-Weir-Signature`` over
    ``"<delivery id>.<timestamp>.<body>"``).
    ``conf``: run conf key → JSON pointer into the payload; None puts the whole payload in conf.
    ``filters``: pointer → the value it must equal (or a list of ``{"pointer", "equals"}``);
    a delivery that fails any of them is recorded and starts no run.
    """

    def __init__(
        self,
        name: str,
        *,
        signature: Signature = "github",
        conf: Mapping[str, str] | None = None,
        filters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.signature = signature
        self.conf = conf
        self.filters = filters

    def __repr__(self) -> str:
        return f"Webhook({self.name!r}, signature={self.signature!r})"

    def problems(self) -> list[dict[str, str]]:
        """What is wrong with these options, ``{"field", "message"}`` each; empty when valid."""
        found: list[dict[str, str]] = []
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            found.append(_problem("name", "use 1-100 letters, digits, '_' or '-' (no dot)"))
        if self.signature not in SIGNATURES:
            found.append(_problem("signature", f"must be one of {', '.join(SIGNATURES)}"))
        found.extend(_conf_problems(self.conf))
        found.extend(_filter_problems(self.filters))
        return found

    def conf_fields(self) -> dict[str, str] | None:
        return None if self.conf is None else dict(self.conf)

    def filter_list(self) -> list[dict[str, Any]]:
        """The filters as ``[{"pointer", "equals"}, ...]``, whichever form was given."""
        if self.filters is None:
            return []
        if isinstance(self.filters, Mapping):
            return [{"pointer": p, "equals": v} for p, v in self.filters.items()]
        return [{"pointer": f["pointer"], "equals": f.get("equals")} for f in self.filters]

    def to_dict(self) -> dict[str, Any]:
        """The serialized options, as the DAG version stores them."""
        return {
            "name": self.name,
            "signature": self.signature,
            "conf_fields": self.conf_fields(),
            "filters": self.filter_list(),
        }


def check_webhooks(where: str, triggers: Sequence[Any]) -> None:
    """Refuse anything in ``triggers`` that is not a valid ``Webhook``, and repeated names."""
    seen: set[str] = set()
    for trigger in triggers:
        if not isinstance(trigger, Webhook):
            raise DagDefinitionError(
                f"{where}: triggers holds {trigger!r}; only weir.Webhook(...) triggers exist."
            )
        for problem in trigger.problems():
            raise DagDefinitionError(
                f"{where}: webhook {trigger.name!r}: {problem['field']} {problem['message']}."
            )
        if trigger.name in seen:
            raise DagDefinitionError(
                f"{where}: two webhooks are named {trigger.name!r}; give each its own name."
            )
        seen.add(trigger.name)


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _conf_problems(conf: Any) -> list[dict[str, str]]:
    if conf is None:
        return []
    if not isinstance(conf, Mapping):
        return [_problem("conf", "must map conf keys to JSON pointers, or be None")]
    if len(conf) > MAX_CONF_FIELDS:
        return [_problem("conf", f"maps at most {MAX_CONF_FIELDS} keys")]
    found: list[dict[str, str]] = []
    for key, pointer in conf.items():
        if not isinstance(key, str) or not _CONF_KEY_PATTERN.match(key):
            found.append(_problem(f"conf.{key}", "a conf key is a string of 1-250 characters"))
            continue
        found.extend(_pointer_problems(f"conf.{key}", pointer))
    return found


def _filter_problems(filters: Any) -> list[dict[str, str]]:
    if filters is None:
        return []
    if isinstance(filters, Mapping):
        filters = [{"pointer": p, "equals": v} for p, v in filters.items()]
    if isinstance(filters, str | bytes) or not isinstance(filters, Sequence):
        return [_problem("filters", "must map JSON pointers to values, or list them")]
    if len(filters) > MAX_FILTERS:
        return [_problem("filters", f"has at most {MAX_FILTERS} entries")]
    found: list[dict[str, str]] = []
    for index, entry in enumerate(filters):
        field = f"filters[{index}]"
        if not isinstance(entry, Mapping) or "pointer" not in entry:
            found.append(_problem(field, 'must be {"pointer": ..., "equals": ...}'))
            continue
        found.extend(_pointer_problems(f"{field}.pointer", entry["pointer"]))
        if not _is_json_value(entry.get("equals")):
            found.append(_problem(f"{field}.equals", "must be a JSON value without NUL"))
    return found


def _pointer_problems(field: str, pointer: Any) -> list[dict[str, str]]:
    try:
        parse_pointer(pointer)
    except ValueError as error:
        return [_problem(field, str(error))]
    return []


def _is_json_value(value: Any) -> bool:
    """JSON-safe and storable: finite numbers, no NUL (PostgreSQL refuses it in JSONB)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return not contains_nul(value)


def contains_nul(value: Any) -> bool:
    """Whether a NUL character hides in any string or key of a JSON value (walked iteratively:
    a payload may nest deeper than the recursion limit allows)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
