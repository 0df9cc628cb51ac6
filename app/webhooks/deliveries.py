"""Receive one webhook call: verify, deduplicate, map, check, start the run, record the delivery.

Everything happens in the caller's transaction, and every outcome is recorded, rejections
included: the caller commits even when no run starts (a 401 or 422 is still a delivery to show).
An unknown hook alone is not recorded (there is no hook to record it under).

Rejected deliveries are kept in a bounded form: only the newest ``keep_rejected`` per hook
(``WEIR_WEBHOOK_REJECTED_KEPT``; every verdict but ``accepted`` and ``filtered``), so a stream of
forged or replayed calls cannot grow the table without end, while every verified delivery, which
may have started a run, stays.

Order matters. The signature is checked first, so an unsigned caller learns nothing else and
cannot use up a delivery id. A verified delivery claims its id by inserting its row (verdict
``accepted`` or ``filtered``) under a savepoint before the run is created; the partial unique index
makes a concurrent replay fail there and become a ``duplicate`` instead of a second run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.conf_size import conf_size_error
from app.db.models import Dag, Webhook, WebhookDelivery
from app.live import mark_changed
from app.scheduler.dag_runs import RunRequest, create_run
from app.scheduler.versions import VersionCache
from app.scheduler.wakeup import wake_scheduler
from app.secrets import SecretBox
from app.webhooks.hooks import get_hook
from app.webhooks.payloads import BadPayload, map_conf, parse_payload, passes_filters
from app.webhooks.signatures import (
    DEFAULT_WINDOW,
    BadSignature,
    is_usable_delivery_id,
    verify_signature,
)
from weir.params import conf_errors

__all__ = ["DeliveryContext", "DeliveryOutcome", "IncomingCall", "Verdict", "receive_delivery"]


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    BAD_SIGNATURE = "bad_signature"
    BAD_PAYLOAD = "bad_payload"
    BAD_CONF = "bad_conf"
    INACTIVE = "inactive"


VERIFIED = (Verdict.ACCEPTED, Verdict.FILTERED)  # the verdicts that use up a delivery id


@dataclass(frozen=True)
class IncomingCall:
    """One HTTP call to a hook, as the route read it."""

    hook_id: str
    body: bytes
    headers: Mapping[str, str]  # looked up with lower-case names
    content_type: str | None
    source_address: str | None
    delivery_id: str | None  # X-GitHub-Delivery or X-Weir-Delivery
    body_too_large: bool = False


@dataclass(frozen=True)
class DeliveryContext:
    """What the use case needs from the service."""

    secrets: SecretBox
    versions: VersionCache
    now: datetime
    max_conf_bytes: int  # WEIR_MAX_CONF_BYTES
    window: timedelta = DEFAULT_WINDOW
    keep_rejected: int = 1000  # WEIR_WEBHOOK_REJECTED_KEPT: the newest rejected deliveries kept


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: str
    verdict: Verdict
    status_code: int
    run_id: str | None = None
    detail: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


class _Rejected(Exception):
    """Ends the pipeline early with an outcome to record."""

    def __init__(self, outcome: DeliveryOutcome, dag_run_id: int | None = None) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome
        self.dag_run_id = dag_run_id


async def receive_delivery(
    session: AsyncSession, call: IncomingCall, context: DeliveryContext
) -> DeliveryOutcome:
    """Handle one call and record it; ``NotFound`` (not recorded) for an unknown hook."""
    hook = await get_hook(session, call.hook_id)
    delivery_id = _usable_delivery_id(call.delivery_id)
    try:
        return await _admit(session, hook, call, delivery_id, context)
    except _Rejected as rejected:
        await _record(
            session, call, delivery_id, rejected.outcome, context.now, rejected.dag_run_id
        )
        await _trim_rejected(session, call.hook_id, context.keep_rejected)
        return rejected.outcome


async def _trim_rejected(session: AsyncSession, hook_id: str, keep: int) -> None:
    """Delete the hook's rejected deliveries older than its newest ``keep`` (one indexed scan)."""
    rejected = (WebhookDelivery.hook_id == hook_id) & WebhookDelivery.verdict.not_in(
        [str(v) for v in VERIFIED]
    )
    newest_dropped = (
        select(WebhookDelivery.id)
        .where(rejected)
        .order_by(WebhookDelivery.id.desc())
        .offset(keep)
        .limit(1)
        .scalar_subquery()
    )
    statement = delete(WebhookDelivery).where(rejected, WebhookDelivery.id <= newest_dropped)
    await session.execute(statement.execution_options(synchronize_session=False))


def _usable_delivery_id(given: str | None) -> str:
    """The caller's delivery id, or a fresh one (no dedupe possible) when it sent none."""
    if given and is_usable_delivery_id(given):
        return given
    return f"weir-{uuid.uuid4()}"


async def _admit(
    session: AsyncSession,
    hook: Webhook,
    call: IncomingCall,
    delivery_id: str,
    context: DeliveryContext,
) -> DeliveryOutcome:
    """The pipeline; each step either passes or raises ``_Rejected``."""
    if call.body_too_large:
        _reject(delivery_id, Verdict.BAD_PAYLOAD, 413, "The body is larger than 1 MiB.")
    _verify(hook, call, delivery_id, context)
    dag = await _active_dag(session, hook, delivery_id)
    await _refuse_replay(session, hook.hook_id, delivery_id, call.delivery_id)
    try:
        payload = parse_payload(call.body, call.content_type)
    except BadPayload as error:
        _reject(delivery_id, Verdict.BAD_PAYLOAD, 422, f"The payload is refused: {error}.")
    if not passes_filters(payload, hook.filters or []):
        outcome = DeliveryOutcome(delivery_id, Verdict.FILTERED, 202, detail="filtered out")
        await _claim(session, call, delivery_id, outcome, context.now)
        return outcome
    conf = map_conf(payload, hook.conf_fields)
    if (too_large := conf_size_error(conf, context.max_conf_bytes)) is not None:
        _reject(delivery_id, Verdict.BAD_CONF, 422, too_large)
    structure = await context.versions.get(session, dag.version_id)
    errors = conf_errors(structure.options.get("params") or {}, conf)
    if errors:
        detail = "The mapped conf does not fit the DAG's params; see errors."
        _reject(delivery_id, Verdict.BAD_CONF, 422, detail, errors)
    return await _start_run(session, hook, call, delivery_id, conf, context)


def _reject(
    delivery_id: str,
    verdict: Verdict,
    status: int,
    detail: str,
    errors: list[dict[str, str]] | None = None,
) -> NoReturn:
    raise _Rejected(
        DeliveryOutcome(delivery_id, verdict, status, detail=detail, errors=errors or [])
    )


def _verify(hook: Webhook, call: IncomingCall, delivery_id: str, context: DeliveryContext) -> None:
    if not hook.secret_encrypted:
        _reject(
            delivery_id,
            Verdict.BAD_SIGNATURE,
            401,
            "This webhook has no secret yet: an admin sets one with "
            f"POST /api/v1/webhooks/{hook.hook_id}/secret.",
        )
    secret = context.secrets.decrypt(hook.secret_encrypted).encode()
    try:
        verify_signature(
            hook.signature, secret, call.body, call.headers, now=context.now, window=context.window
        )
    except BadSignature as error:
        _reject(delivery_id, Verdict.BAD_SIGNATURE, 401, f"Bad signature: {error}.")


async def _active_dag(session: AsyncSession, hook: Webhook, delivery_id: str) -> Dag:
    dag = await session.get(Dag, hook.dag_id)
    if not hook.is_active or dag is None or not dag.is_active:
        what = "webhook" if not hook.is_active else f"DAG {hook.dag_id!r}"
        _reject(delivery_id, Verdict.INACTIVE, 409, f"The {what} is inactive; nothing started.")
    assert dag is not None
    return dag


async def _refuse_replay(
    session: AsyncSession, hook_id: str, delivery_id: str, given: str | None
) -> None:
    """A delivery id already verified answers 200 with the original run: the sender's retry
    succeeds and nothing starts twice."""
    if given != delivery_id:
        return  # a generated id is new by construction
    original = await _original(session, hook_id, delivery_id)
    if original is not None:
        _raise_duplicate(delivery_id, original)


async def _original(
    session: AsyncSession, hook_id: str, delivery_id: str
) -> WebhookDelivery | None:
    statement = select(WebhookDelivery).where(
        WebhookDelivery.hook_id == hook_id,
        WebhookDelivery.delivery_id == delivery_id,
        WebhookDelivery.verdict.in_([str(v) for v in VERIFIED]),
    )
    return (await session.scalars(statement)).first()


def _raise_duplicate(delivery_id: str, original: WebhookDelivery) -> NoReturn:
    outcome = DeliveryOutcome(
        delivery_id,
        Verdict.DUPLICATE,
        200,
        run_id=original.run_id,
        detail=f"This delivery id was already received ({original.verdict}); nothing started.",
    )
    raise _Rejected(outcome, original.dag_run_id)


async def _claim(
    session: AsyncSession,
    call: IncomingCall,
    delivery_id: str,
    outcome: DeliveryOutcome,
    now: datetime,
) -> WebhookDelivery:
    """Insert a verified delivery; a concurrent twin that committed first makes it a duplicate."""
    try:
        async with session.begin_nested():
            return await _record(session, call, delivery_id, outcome, now)
    except IntegrityError:
        original = await _original(session, call.hook_id, delivery_id)
        assert original is not None  # the unique index said it exists
        _raise_duplicate(delivery_id, original)


async def _start_run(
    session: AsyncSession,
    hook: Webhook,
    call: IncomingCall,
    delivery_id: str,
    conf: dict[str, Any],
    context: DeliveryContext,
) -> DeliveryOutcome:
    outcome = DeliveryOutcome(delivery_id, Verdict.ACCEPTED, 202)
    delivery = await _claim(session, call, delivery_id, outcome, context.now)
    request = RunRequest(dag_id=hook.dag_id, run_type="webhook", conf=conf)
    run, _created = await create_run(session, request, context.versions, context.now)
    delivery.dag_run_id, delivery.run_id = run.id, run.run_id
    await wake_scheduler(session)
    return DeliveryOutcome(delivery_id, Verdict.ACCEPTED, 202, run_id=run.run_id)


async def _record(
    session: AsyncSession,
    call: IncomingCall,
    delivery_id: str,
    outcome: DeliveryOutcome,
    now: datetime,
    dag_run_id: int | None = None,
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        hook_id=call.hook_id,
        delivery_id=delivery_id,
        received_at=now,
        source_address=(call.source_address or "")[:100] or None,
        verdict=str(outcome.verdict),
        status_code=outcome.status_code,
        dag_run_id=dag_run_id,
        run_id=outcome.run_id,
        detail=outcome.detail,
    )
    session.add(delivery)
    await session.flush()
    mark_changed(session)  # the deliveries pages are live
    return delivery
