"""Keep the hooks a DAG file declares in line with the DAG's latest version.

Called by the DAG processor when it stores a version, in the same transaction. A new declared hook
is created with no secret: nobody could learn a generated one (the DAG processor has no channel to
show it), so until an admin sets it (``POST /api/v1/webhooks/{hook_id}/secret``) every call is
refused as unsigned. A hook that disappeared from the file turns inactive rather than being deleted,
so its deliveries stay listed; declaring it again brings it back with its secret. Hooks made
through the API (``origin='api'``) are never touched, even one with the same name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Webhook
from app.webhooks.hooks import hook_id_of

__all__ = ["sync_declared_hooks"]

logger = logging.getLogger(__name__)
NO_SECRET = b""


async def sync_declared_hooks(
    session: AsyncSession, dag_id: str, declared: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Create, update, reactivate and deactivate the ``origin='dag'`` hooks of ``dag_id`` so they
    match ``declared`` (the ``webhooks`` of its serialized options)."""
    existing = {
        hook.name: hook
        for hook in await session.scalars(select(Webhook).where(Webhook.dag_id == dag_id))
    }
    for options in declared:
        hook = existing.get(options["name"])
        if hook is None:
            await _create(session, dag_id, options, now)
        elif hook.origin != "dag":
            logger.warning(
                "DAG %s declares webhook %r, but an API-made hook has that name; the declared "
                "one is ignored: rename it", dag_id, hook.name
            )  # fmt: skip
        else:
            _refresh(hook, options, now)
    names = {options["name"] for options in declared}
    for hook in existing.values():
        if hook.origin == "dag" and hook.name not in names and hook.is_active:
            hook.is_active, hook.updated_at = False, now
    await session.flush()


async def _create(
    session: AsyncSession, dag_id: str, options: dict[str, Any], now: datetime
) -> None:
    """Insert the hook unless another replica parsing the same file just did."""
    values = {
        "hook_id": hook_id_of(dag_id, options["name"]),
        "dag_id": dag_id,
        "name": options["name"],
        "origin": "dag",
        "signature": options["signature"],
        "secret_encrypted": NO_SECRET,
        "conf_fields": options["conf_fields"],
        "filters": options["filters"],
        "is_active": True,
        "created_at": now,
        "updated_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(dialect.insert(Webhook).values(**values).on_conflict_do_nothing())


def _refresh(hook: Webhook, options: dict[str, Any], now: datetime) -> None:
    wanted = {
        "signature": options["signature"],
        "conf_fields": options["conf_fields"],
        "filters": options["filters"],
        "is_active": True,
    }
    changed = {name: value for name, value in wanted.items() if getattr(hook, name) != value}
    for name, value in changed.items():
        setattr(hook, name, value)
    if changed:
        hook.updated_at = now
