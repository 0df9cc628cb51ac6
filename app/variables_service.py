"""Variables as a use case: validation, encryption, secrecy, masking and audit.

Shared by the REST API (``app/api/v1/variables.py``) and the dashboard (``app/dashboard/pages/
variables.py``). Every value is Fernet-encrypted at rest; a secret variable's value is never
shown (``***``). A variable whose key looks secret (``password``, ``token``, ``api_key``, …,
Airflow's heuristic) is secret unless the writer says otherwise.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import record
from app.auth import Principal
from app.db.models import Variable
from app.live import mark_changed
from app.secrets import SecretBox
from app.state import ServiceState
from weir.errors import Conflict, InvalidRequest, NotFound
from weir.resources import MASK, VariableValue, is_secret_name

__all__ = [
    "KEY_PATTERN",
    "NO_NUL",
    "VariableKey",
    "VariableWrite",
    "delete_variable",
    "get_variable_row",
    "masked_value",
    "reveal_variable",
    "set_variable",
]

NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text
KEY_PATTERN = r"^[A-Za-z0-9_.\-]+$"
MAX_VALUE_CHARS = 1_000_000
VariableKey = Annotated[
    str,
    Field(min_length=1, max_length=250, pattern=KEY_PATTERN, description="Letters, digits, _ . -"),
]


class VariableWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"value": "eu-west-1", "description": "Where the exports go"},
                {"value": '{"retries": 3}'},
                {"value": "tok-123", "is_secret": True},
            ]
        },
    )

    value: str = Field(
        max_length=MAX_VALUE_CHARS,
        description="A string; JSON text if tasks read it with deserialize_json=True.",
    )
    description: str | None = Field(default=None, max_length=5000, pattern=NO_NUL)
    is_secret: bool | None = Field(
        default=None, description="Omit to decide by the key: secret if it looks like one."
    )


def masked_value(row: Variable, secrets: SecretBox) -> str:
    """What people may see: the value, or ``***`` for a secret variable."""
    return MASK if row.is_secret else secrets.decrypt(row.value_encrypted)


def reveal_variable(row: Variable, secrets: SecretBox) -> VariableValue:
    """The value in clear, for the task of a running attempt only."""
    return VariableValue(
        key=row.key, value=secrets.decrypt(row.value_encrypted), is_secret=row.is_secret
    )


async def get_variable_row(session: AsyncSession, key: str) -> Variable:
    row = await session.get(Variable, key)
    if row is None:
        raise NotFound(f"Variable {key!r} does not exist; PUT /api/v1/variables/{key} sets it.")
    return row


async def set_variable(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    key: str,
    body: VariableWrite,
    *,
    keep_value: bool = False,
    origin: str = "api",
) -> Variable:
    """Create the variable or replace its value, description and secrecy.

    ``keep_value`` (the dashboard's edit form left the secret field empty) keeps the stored value
    of an existing variable without it ever leaving the service.
    """
    is_secret = is_secret_name(key) if body.is_secret is None else body.is_secret
    row = await session.get(Variable, key)
    created = row is None
    if row is None:
        if keep_value:
            raise InvalidRequest(f"Variable {key!r} does not exist yet; give it a value.")
        row = Variable(key=key)
        session.add(row)
    if not keep_value:
        row.value_encrypted = service.secrets.encrypt(body.value)
    row.description, row.is_secret = body.description, is_secret
    try:
        await session.flush()
    except IntegrityError as error:  # created by a concurrent request since we looked
        raise Conflict(f"Variable {key!r} was created concurrently; send the PUT again.") from error
    detail = {"created": created, "is_secret": is_secret, "value_changed": not keep_value}
    await record(session, principal, "variable.set", key, service.clock.now(), detail=detail,
                 origin=origin)  # fmt: skip
    mark_changed(session)
    return row


async def delete_variable(
    session: AsyncSession,
    service: ServiceState,
    principal: Principal,
    key: str,
    *,
    origin: str = "api",
) -> None:
    await session.delete(await get_variable_row(session, key))
    await record(session, principal, "variable.delete", key, service.clock.now(), origin=origin)
    mark_changed(session)
