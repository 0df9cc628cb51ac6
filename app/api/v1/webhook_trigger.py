"""``POST /api/v1/webhooks/{hook_id}``: the signed external trigger (no bearer token).

The route reads the raw body (the signature covers its exact bytes), hands the call to
``app.webhooks.deliveries`` and turns the outcome into an answer. Rejections are answered with
problem+json but still commit, so every delivery of a known hook is recorded.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import Service, Session
from app.api.problems import PROBLEM_RESPONSES, problem_response
from app.webhooks.deliveries import (
    DeliveryContext,
    DeliveryOutcome,
    IncomingCall,
    Verdict,
    receive_delivery,
)

__all__ = ["MAX_BODY_BYTES", "WebhookDeliveryReceipt", "router"]

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)

MAX_BODY_BYTES = 1024 * 1024
DELIVERY_HEADERS = ("x-github-delivery", "x-weir-delivery")


class WebhookDeliveryReceipt(BaseModel):
    """What a sender learns: its delivery's id, the verdict, and the run it started (if any)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                    "verdict": "accepted",
                    "run_id": "webhook__2026-01-01T06:00:00+00:00__1a2b3c4d",
                }
            ]
        }
    )

    delivery_id: str = Field(description="The sender's delivery id header, or one made up.")
    verdict: Verdict
    run_id: str | None = Field(description="The run this delivery started (or first started).")


@router.post(
    "/{hook_id}",
    status_code=202,
    operation_id="webhooks-deliver",
    # Explicit: the route also returns problem+json answers itself, so that they commit.
    response_model=WebhookDeliveryReceipt,
    responses={
        200: {"model": WebhookDeliveryReceipt, "description": "A replay: nothing new started."},
        409: {**PROBLEM_RESPONSES[409], "description": "The hook or its DAG is inactive."},
        413: {**PROBLEM_RESPONSES[409], "description": "The body is larger than 1 MiB."},
    },
    openapi_extra={
        "security": [],  # no bearer token: the HMAC signature is the credential
        "requestBody": {
            "description": "Any JSON or url-encoded form body, signed with the hook's secret.",
            "content": {
                media: {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}
                for media in ("application/json", "application/x-www-form-urlencoded")
            },
        },
    },
)
async def deliver_webhook(
    hook_id: str, request: Request, response: Response, session: Session, service: Service
) -> WebhookDeliveryReceipt | Response:
    """Start a run of the hook's DAG from a signed call; 202 with the run id.

    Sign the raw body with HMAC-SHA256 and the hook's secret: ``X-Hub-Signature-256:
    sha256=<hex>`` (``github`` hooks) or ``X-Weir-Delivery: <id>``, ``X-Weir-Timestamp: <unix
    seconds>`` and ``X-Weir-Signature: sha256=<hex>`` over ``<id>.<timestamp>.<body>``
    (``timestamped`` hooks, five minutes of leeway). ``X-GitHub-Delivery`` or ``X-Weir-Delivery``
    names the delivery: a
    replayed id answers 200 with the first run's id and starts nothing. A delivery the filters
    leave out answers 202 with ``verdict: filtered`` and no run. Bad signatures (401), payloads
    (422) and confs (422) are recorded too: ``GET /api/v1/webhooks/{hook_id}/deliveries``.
    """
    body, too_large = await _read_body(request)
    call = IncomingCall(
        hook_id=hook_id,
        body=body,
        headers=request.headers,
        content_type=request.headers.get("content-type"),
        source_address=request.client.host if request.client else None,
        delivery_id=_delivery_id(request),
        body_too_large=too_large,
    )
    context = DeliveryContext(
        secrets=service.secrets,
        versions=service.versions,
        now=service.clock.now(),
        max_conf_bytes=service.settings.max_conf_bytes,
        keep_rejected=service.settings.webhook_rejected_kept,
    )
    outcome = await receive_delivery(session, call, context)
    if outcome.status_code >= 400:
        return _problem(outcome)
    response.status_code = outcome.status_code
    return WebhookDeliveryReceipt(
        delivery_id=outcome.delivery_id, verdict=outcome.verdict, run_id=outcome.run_id
    )


async def _read_body(request: Request) -> tuple[bytes, bool]:
    """The raw body, or ``(b"", True)`` as soon as it passes the limit (never read it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False


def _delivery_id(request: Request) -> str | None:
    for name in DELIVERY_HEADERS:
        value = request.headers.get(name)
        if value:
            return value.strip()
    return None


def _problem(outcome: DeliveryOutcome) -> Response:
    response = problem_response(outcome.status_code, outcome.detail, errors=outcome.errors or None)
    if outcome.status_code == 401:
        response.headers["WWW-Authenticate"] = 'HMAC-SHA256 realm="webhooks"'
    return response
