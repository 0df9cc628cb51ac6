"""Managing hooks: create one through the API, change its options, set its secret, delete it.

Helpers for the REST routes; none commits. A hook's options obey the SDK's rules
(``weir.webhooks.Webhook.problems``), whichever way it was made. A hook a DAG file declares
(``origin='dag'``) takes its options from the file: the API may only switch it on or off and set
its secret, and deleting it means removing it from the file.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Dag, Webhook
from app.secrets import SecretBox
from weir.errors import Conflict, InvalidRequest, NotFound
from weir.webhooks import Webhook as WebhookOptions

__all__ = [
    "MAX_HOOK_ID",
    "check_options",
    "create_api_hook",
    "delete_api_hook",
    "generate_secret",
    "get_hook",
    "hook_id_of",
    "replace_secret",
    "update_hook",
]

MAX_HOOK_ID = 400
OPTION_FIELDS = ("signature", "conf_fields", "filters")


def hook_id_of(dag_id: str, name: str) -> str:
    return f"{dag_id}.{name}"


def generate_secret() -> str:
    """A new secret: 256 random bits, URL-safe (easy to paste into GitHub or a shell)."""
    return secrets.token_urlsafe(32)


async def get_hook(session: AsyncSession, hook_id: str) -> Webhook:
    """The hook, or ``NotFound``. An id that could not exist (too long, a NUL) is not looked up:
    PostgreSQL refuses NUL in text, and that must be a 404, not a 500."""
    hook = None
    if len(hook_id) <= MAX_HOOK_ID and "\x00" not in hook_id:
        hook = await session.get(Webhook, hook_id)
    if hook is None:
        raise NotFound(
            f"There is no webhook {hook_id!r}; GET /api/v1/webhooks lists the hooks there are."
        )
    return hook


def check_options(options: WebhookOptions) -> None:
    """``InvalidRequest`` naming each field at fault (as ``body.<field>``)."""
    problems = options.problems()
    if problems:
        errors = [{"field": f"body.{p['field']}", "message": p["message"]} for p in problems]
        raise InvalidRequest("The webhook's options are not valid; see errors.", errors=errors)


async def create_api_hook(
    session: AsyncSession,
    box: SecretBox,
    dag_id: str,
    options: WebhookOptions,
    secret: str | None,
    now: datetime,
) -> tuple[Webhook, str]:
    """Store a new ``origin='api'`` hook; returns it with its clear secret (shown once)."""
    check_options(options)
    if await session.get(Dag, dag_id) is None:
        raise NotFound(f"DAG {dag_id!r} does not exist; `weir dags list` shows the DAGs there are.")
    hook_id = hook_id_of(dag_id, options.name)
    if await session.get(Webhook, hook_id) is not None:
        raise Conflict(f"Webhook {hook_id!r} exists already: choose another name.")
    clear = secret or generate_secret()
    hook = Webhook(
        hook_id=hook_id,
        dag_id=dag_id,
        name=options.name,
        origin="api",
        signature=options.signature,
        secret_encrypted=box.encrypt(clear),
        conf_fields=options.conf_fields(),
        filters=options.filter_list(),
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(hook)
    await session.flush()
    return hook, clear


def update_hook(hook: Webhook, changes: dict[str, Any], now: datetime) -> list[str]:
    """Apply ``changes`` (``is_active`` and the option fields); returns the names it changed.

    A declared hook's options belong to its DAG file, so changing them here is a ``Conflict``.
    """
    options = sorted(set(changes) & set(OPTION_FIELDS))
    if options and hook.origin == "dag":
        raise Conflict(
            f"Webhook {hook.hook_id!r} is declared in its DAG file: change {', '.join(options)} "
            "there (the API may only set is_active and the secret)."
        )
    merged = WebhookOptions(
        hook.name,
        signature=changes.get("signature", hook.signature),
        conf=changes.get("conf_fields", hook.conf_fields),
        filters=changes.get("filters", hook.filters),
    )
    check_options(merged)
    normalized = {
        **changes,
        "signature": merged.signature,
        "conf_fields": merged.conf_fields(),
        "filters": merged.filter_list(),
    }
    changed = [name for name in changes if getattr(hook, name) != normalized[name]]
    for name in changed:
        setattr(hook, name, normalized[name])
    if changed:
        hook.updated_at = now
    return changed


def replace_secret(box: SecretBox, hook: Webhook, secret: str | None, now: datetime) -> str:
    """Give the hook ``secret`` (or a generated one); returns the clear value, shown once."""
    clear = secret or generate_secret()
    hook.secret_encrypted = box.encrypt(clear)
    hook.updated_at = now
    return clear


async def delete_api_hook(session: AsyncSession, hook: Webhook) -> None:
    """Delete an API-made hook with its deliveries; a declared one is removed from its file."""
    if hook.origin == "dag":
        raise Conflict(
            f"Webhook {hook.hook_id!r} is declared in DAG {hook.dag_id!r}: remove the Webhook "
            "from the DAG file's triggers (its hook then turns inactive), or set is_active=false."
        )
    await session.delete(hook)
    await session.flush()
