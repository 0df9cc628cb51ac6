"""Connections and variables inside a running task: ``get_connection`` and ``get_variable``.

A task never sees the database (invariant 6). The worker puts a ``ResourceSource`` for the
attempt it runs into ``current_resources``; the source asks the execution API with the attempt's
token, and registers every secret it hands out with the attempt's log masker before the task gets
it. Sync tasks run in a pool child, whose source asks the worker over the child's pipe; async
tasks run on the worker's event loop and must ``await aget_connection(...)`` (a blocking call
there would stall the loop that serves the answer).

``Connection`` and ``VariableValue`` are also the bodies the execution API answers with.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from weir.errors import InvalidRequest, NotFound

__all__ = [
    "MASK",
    "Connection",
    "Resource",
    "ResourceKind",
    "ResourceSource",
    "VariableValue",
    "aget_connection",
    "aget_variable",
    "current_resources",
    "get_connection",
    "get_variable",
    "is_secret_name",
    "use_resources",
]

MASK = "***"
SECRET_NAME_PARTS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "credential",
    "authorization",
)  # fmt: skip
"""Airflow's heuristic: a variable or extra field whose name contains one of these is secret."""

ResourceKind = Literal["connection", "variable"]


def is_secret_name(name: str) -> bool:
    """Whether a variable key or connection extra field names a secret (by its name alone)."""
    lowered = name.lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """Credentials for an external system, as a task receives them (password in clear)."""

    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    description: str | None = None

    def get_uri(self) -> str:
        """``type://login:password@host:port/schema?extra``, each part percent-encoded."""
        auth = ""
        if self.login is not None or self.password is not None:
            auth = quote(self.login or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        netloc = auth + (self.host or "") + (f":{self.port}" if self.port is not None else "")
        uri = f"{self.conn_type}://{netloc}/{quote(self.schema or '', safe='')}"
        if self.extra:
            uri += "?" + urlencode({k: _query_value(v) for k, v in self.extra.items()})
        return uri

    def secret_values(self) -> list[str]:
        """What a log must never show: the password and the extra fields with secret names."""
        values = [self.password] if self.password else []
        for key, value in self.extra.items():
            if is_secret_name(key) and isinstance(value, str) and value:
                values.append(value)
        return values

    @classmethod
    def from_uri(cls, conn_id: str, uri: str) -> Connection:
        """Parse ``postgresql://user:pass@host:5432/db?sslmode=require`` (the query is extra)."""
        parts = urlsplit(uri)
        if not parts.scheme or "://" not in uri:
            raise InvalidRequest(
                f"{uri!r} is not a connection URI; write it as type://login:password@host:port/"
                "schema, e.g. postgresql://etl@db.example.com:5432/warehouse."
            )
        try:
            port = parts.port
        except ValueError as error:
            raise InvalidRequest(
                f"The port in {uri!r} is not a number from 0 to 65535 (the form is "
                "type://login:password@host:port/schema)."
            ) from error
        return cls(
            conn_id=conn_id,
            conn_type=parts.scheme,
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            login=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            schema=unquote(parts.path.lstrip("/")) or None,
            extra=dict(parse_qsl(parts.query)),
        )


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclasses.dataclass(frozen=True, slots=True)
class VariableValue:
    """A variable's value in clear, and whether it is secret (to be masked in logs)."""

    key: str
    value: str
    is_secret: bool = False


Resource = Connection | VariableValue


class ResourceSource(Protocol):
    """How a running task reaches its attempt's connections and variables (``None``: missing)."""

    def fetch(self, kind: ResourceKind, name: str) -> Resource | None: ...

    async def afetch(self, kind: ResourceKind, name: str) -> Resource | None: ...


current_resources: contextvars.ContextVar[ResourceSource | None] = contextvars.ContextVar(
    "weir_resources", default=None
)


@contextmanager
def use_resources(source: ResourceSource) -> Iterator[None]:
    """Make ``source`` answer the SDK calls of the code run inside the block (the worker's job)."""
    token = current_resources.set(source)
    try:
        yield
    finally:
        current_resources.reset(token)


def get_connection(conn_id: str) -> Connection:
    """The connection ``conn_id``, password in clear; ``NotFound`` if it does not exist.

    In an async task, use ``await aget_connection(conn_id)``.
    """
    return _connection(conn_id, _source().fetch("connection", conn_id))


async def aget_connection(conn_id: str) -> Connection:
    """``get_connection`` for async tasks."""
    return _connection(conn_id, await _source().afetch("connection", conn_id))


_MISSING: Any = object()


def get_variable(key: str, default: Any = _MISSING, *, deserialize_json: bool = False) -> Any:
    """The value of variable ``key`` (parsed as JSON with ``deserialize_json``); ``default`` if it
    does not exist, or ``NotFound`` when no default is given.

    In an async task, use ``await aget_variable(key)``.
    """
    return _variable(key, _source().fetch("variable", key), default, deserialize_json)


async def aget_variable(
    key: str, default: Any = _MISSING, *, deserialize_json: bool = False
) -> Any:
    """``get_variable`` for async tasks."""
    return _variable(key, await _source().afetch("variable", key), default, deserialize_json)


def _source() -> ResourceSource:
    source = current_resources.get()
    if source is None:
        raise RuntimeError(
            "Connections and variables are only available while a task runs on a Weir worker."
        )
    return source


def _connection(conn_id: str, found: Resource | None) -> Connection:
    if not isinstance(found, Connection):
        raise NotFound(
            f"Connection {conn_id!r} does not exist; add it with `weir connections add {conn_id} "
            "URI` or POST /api/v1/connections."
        )
    return found


def _variable(key: str, found: Resource | None, default: Any, deserialize_json: bool) -> Any:
    if not isinstance(found, VariableValue):
        if default is _MISSING:
            raise NotFound(
                f"Variable {key!r} does not exist; set it with `weir variables set {key} VALUE` "
                "or pass a default."
            )
        return default
    return json.loads(found.value) if deserialize_json else found.value
