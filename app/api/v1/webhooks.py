"""Webhooks and their deliveries: create, list, read, update, delete, set the secret.

Viewers read hooks and deliveries; operators create, change and delete hooks; admins set secrets.
A secret is shown once, in the answer that set it, and never again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy import select

from app.api.deps import Service, Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.audit import record
from app.auth import Admin, Operator, Viewer
from app.db.models import Webhook, WebhookDelivery
from app.webhooks import hooks
from app.webhooks.deliveries import Verdict
from weir.webhooks import MAX_CONF_FIELDS, MAX_FILTERS
from weir.webhooks import Webhook as WebhookOptions

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)

DagIdQuery = Annotated[
    str | None, Query(max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$", description="Only this DAG.")
]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,100}$", examples=["github-push"])]
Pointer = Annotated[str, Field(max_length=1000, examples=["/ref"])]
ConfKey = Annotated[str, Field(min_length=1, max_length=250)]
ConfFields = Annotated[
    dict[ConfKey, Pointer] | None,
    Field(
        max_length=MAX_CONF_FIELDS,
        description="Run conf key -> JSON pointer into the payload; null: the whole payload.",
    ),
]
Secret = Annotated[
    str,
    Field(
        pattern=r"^[^\x00-\x1f\x7f]{16,256}$",
        description="16-256 printable characters; omit it to have one generated.",
    ),
]
Signature = Literal["github", "timestamped"]
EXAMPLE_HOOK: dict[str, Any] = {
    "dag_id": "webhook_orders",
    "name": "shop",
    "signature": "github",
    "conf_fields": {"order_id": "/order/id", "amount": "/order/amount"},
    "filters": [{"pointer": "/action", "equals": "created"}],
}


class WebhookFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pointer: Pointer
    equals: JsonValue = Field(description="The value the pointer must name (JSON equality).")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_HOOK]})

    dag_id: str = Field(max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: Name
    signature: Signature = "github"
    conf_fields: ConfFields = None
    filters: list[WebhookFilter] = Field(default_factory=list, max_length=MAX_FILTERS)
    secret: Secret | None = None


class WebhookPatch(BaseModel):
    """Only the fields sent change; a declared hook (origin 'dag') takes only ``is_active``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"is_active": False}]}
    )

    signature: Signature | None = None
    conf_fields: ConfFields = None
    filters: list[WebhookFilter] | None = Field(default=None, max_length=MAX_FILTERS)
    is_active: bool | None = None


class WebhookSecretSet(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    secret: Secret | None = None


class WebhookPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE_HOOK,
                    "hook_id": "webhook_orders.shop",
                    "origin": "api",
                    "is_active": True,
                    "has_secret": True,
                    "url": "https://weir.example.com/api/v1/webhooks/webhook_orders.shop",
                    "created_at": "2026-01-01T06:00:00Z",
                    "updated_at": "2026-01-01T06:00:00Z",
                }
            ]
        }
    )

    hook_id: str
    dag_id: str
    name: str
    origin: Literal["dag", "api"]
    signature: Signature
    conf_fields: dict[str, str] | None
    filters: list[WebhookFilter]
    is_active: bool
    has_secret: bool = Field(description="False until a secret is set (declared hooks).")
    url: str = Field(description="Where senders POST their signed calls.")
    created_at: datetime
    updated_at: datetime


class WebhooksPublic(BaseModel):
    webhooks: list[WebhookPublic]
    total: int


class WebhookWithSecret(WebhookPublic):
    secret: str = Field(description="The clear secret: shown this once, store it now.")


class WebhookDeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    hook_id: str
    delivery_id: str | None
    received_at: datetime
    source_address: str | None
    verdict: Verdict
    status_code: int
    run_id: str | None
    detail: str | None


class WebhookDeliveriesPublic(BaseModel):
    deliveries: list[WebhookDeliveryPublic]
    total: int


HOOK_SORT_KEYS = {
    "hook_id": Webhook.hook_id,
    "dag_id": Webhook.dag_id,
    "created_at": Webhook.created_at,
    "updated_at": Webhook.updated_at,
}
DELIVERY_SORT_KEYS = {"id": WebhookDelivery.id, "received_at": WebhookDelivery.received_at}


def _public(request: Request, hook: Webhook) -> WebhookPublic:
    return WebhookPublic(
        hook_id=hook.hook_id,
        dag_id=hook.dag_id,
        name=hook.name,
        origin="dag" if hook.origin == "dag" else "api",
        signature="timestamped" if hook.signature == "timestamped" else "github",
        conf_fields=hook.conf_fields,
        filters=[WebhookFilter.model_validate(f) for f in hook.filters or []],
        is_active=hook.is_active,
        has_secret=bool(hook.secret_encrypted),
        url=str(request.url_for("deliver_webhook", hook_id=hook.hook_id)),
        created_at=hook.created_at,
        updated_at=hook.updated_at,
    )


def _with_secret(request: Request, hook: Webhook, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret(**_public(request, hook).model_dump(), secret=secret)


@router.get("", operation_id="webhooks-list")
async def list_webhooks(
    request: Request,
    session: Session,
    _token: Viewer,
    dag_id: DagIdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> WebhooksPublic:
    """The hooks, declared and API-made; sort keys: hook_id (default), dag_id, created_at,
    updated_at. Secrets are never shown."""
    statement = select(Webhook)
    if dag_id is not None:
        statement = statement.where(Webhook.dag_id == dag_id)
    rows, total = await paginate(
        session,
        statement,
        Page(limit, offset, order_by),
        sort_keys=HOOK_SORT_KEYS,
        default="hook_id",
        tiebreak=Webhook.hook_id,
    )
    return WebhooksPublic(webhooks=[_public(request, hook) for hook in rows], total=total)


@router.post("", status_code=201, operation_id="webhooks-create")
async def create_webhook(
    body: WebhookCreate, request: Request, session: Session, service: Service, principal: Operator
) -> WebhookWithSecret:
    """Create a hook for a DAG; the answer holds its secret (given or generated) this once."""
    options = _options(body.name, body.signature, body.conf_fields, body.filters)
    now = service.clock.now()
    hook, secret = await hooks.create_api_hook(
        session, service.secrets, body.dag_id, options, body.secret, now
    )
    detail = {"dag_id": hook.dag_id, "signature": hook.signature, "secret_given": bool(body.secret)}
    await record(session, principal, "webhook.create", hook.hook_id, now, detail=detail)
    return _with_secret(request, hook, secret)


@router.get("/{hook_id}", operation_id="webhooks-get")
async def read_webhook(
    hook_id: str, request: Request, session: Session, _token: Viewer
) -> WebhookPublic:
    """One hook, without its secret."""
    return _public(request, await hooks.get_hook(session, hook_id))


@router.patch("/{hook_id}", operation_id="webhooks-update")
async def update_webhook(
    hook_id: str,
    patch: WebhookPatch,
    request: Request,
    session: Session,
    service: Service,
    principal: Operator,
) -> WebhookPublic:
    """Change the options or switch the hook off and on; a declared hook's options live in its
    DAG file (409)."""
    hook = await hooks.get_hook(session, hook_id)
    # null leaves a field as it is, except conf_fields, where null means the whole payload.
    sent = patch.model_dump(include=patch.model_fields_set)
    changes = {k: v for k, v in sent.items() if v is not None or k == "conf_fields"}
    now = service.clock.now()
    changed = hooks.update_hook(hook, changes, now)
    if changed:
        await record(session, principal, "webhook.update", hook_id, now, detail={"fields": changed})
    return _public(request, hook)


@router.delete("/{hook_id}", status_code=204, operation_id="webhooks-delete")
async def delete_webhook(
    hook_id: str, session: Session, service: Service, principal: Operator
) -> Response:
    """Delete an API-made hook and its deliveries; a declared hook must leave its file (409)."""
    hook = await hooks.get_hook(session, hook_id)
    await hooks.delete_api_hook(session, hook)
    await record(session, principal, "webhook.delete", hook_id, service.clock.now())
    return Response(status_code=204)


@router.post("/{hook_id}/secret", operation_id="webhooks-set-secret")
async def set_webhook_secret(
    hook_id: str,
    body: WebhookSecretSet,
    request: Request,
    session: Session,
    service: Service,
    principal: Admin,
) -> WebhookWithSecret:
    """Set the secret (given, or generated when omitted) and show it this once; calls signed with
    the old one are refused from now on. This is how a declared hook gets its secret."""
    hook = await hooks.get_hook(session, hook_id)
    now = service.clock.now()
    secret = hooks.replace_secret(service.secrets, hook, body.secret, now)
    detail = {"secret_given": bool(body.secret)}
    await record(session, principal, "webhook.set_secret", hook_id, now, detail=detail)
    return _with_secret(request, hook, secret)


@router.get("/{hook_id}/deliveries", operation_id="webhook-deliveries-list")
async def list_deliveries(
    hook_id: str,
    session: Session,
    _token: Viewer,
    verdict: Annotated[Verdict | None, Query(description="Only this verdict.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> WebhookDeliveriesPublic:
    """Every call of the hook, newest first by default (sort keys: id, received_at)."""
    await hooks.get_hook(session, hook_id)
    statement = select(WebhookDelivery).where(WebhookDelivery.hook_id == hook_id)
    if verdict is not None:
        statement = statement.where(WebhookDelivery.verdict == verdict)
    rows, total = await paginate(
        session,
        statement,
        Page(limit, offset, order_by),
        sort_keys=DELIVERY_SORT_KEYS,
        default="-id",
        tiebreak=WebhookDelivery.id,
    )
    items = [WebhookDeliveryPublic.model_validate(row) for row in rows]
    return WebhookDeliveriesPublic(deliveries=items, total=total)


def _options(
    name: str,
    signature: str,
    conf_fields: dict[str, str] | None,
    filters: list[WebhookFilter],
) -> WebhookOptions:
    return WebhookOptions(
        name,
        signature="timestamped" if signature == "timestamped" else "github",
        conf=conf_fields,
        filters=[f.model_dump() for f in filters],
    )
