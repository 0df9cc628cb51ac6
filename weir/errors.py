"""Weir's error hierarchy. Domain code raises these; the API maps them to problem+json in one place.

WeirError
├── ConfigError            settings that cannot work (with the fix in the message)
├── DagDefinitionError     a DAG file defines something invalid (cycle, duplicate id, ...)
├── NotFound               a DAG, run, task or token that does not exist
├── Conflict               a write that lost its compare-and-set, or a duplicate
├── InvalidRequest         input that is well-formed but not acceptable
├── SchemaOutOfDate        the database needs ``weir db upgrade``
└── BrokerError            the message broker refused or is unreachable
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConfigError",
    "Conflict",
    "DagDefinitionError",
    "InvalidRequest",
    "NotFound",
    "SchemaOutOfDate",
    "WeirError",
]


class WeirError(Exception):
    """Base of every error Weir raises on purpose."""


class ConfigError(WeirError):
    pass


class DagDefinitionError(WeirError):
    """A DAG file defines a DAG that cannot run; the message names the DAG, task and file."""


class NotFound(WeirError):
    pass


class Conflict(WeirError):
    pass


class InvalidRequest(WeirError):
    """Input that is well-formed but not acceptable; ``errors`` names each field at fault
    (``{"field": …, "message": …}``) when there is more to say than the message."""

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors


class SchemaOutOfDate(WeirError):
    pass


class BrokerError(WeirError):
    pass
