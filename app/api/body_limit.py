"""Request body limits, enforced at the ASGI level before any route reads a byte.

A ``Content-Length`` above the limit is answered 413 at once: the body is never read, so a huge
upload costs the server nothing but its headers. A body without a length (chunked) is counted as
the app reads it and cut off with 413 as soon as it passes the limit. ``/execution/v1`` has a
larger limit than ``/api/v1`` and the dashboard: a worker's finish report carries the end of the
log and the task's return value. The webhook trigger bounds its own body (``webhook_trigger``),
because it records a too-large delivery as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_response
from weir.config import Settings

__all__ = [
    "BodyLimit",
    "BodyLimitMiddleware",
    "BodyLimits",
    "BodyTooLarge",
    "declared_length",
    "is_webhook_trigger",
]

_WEBHOOK_TRIGGER = re.compile(r"^/api/v1/webhooks/[^/]+/?$")


@dataclass(frozen=True, slots=True)
class BodyLimit:
    max_bytes: int
    setting: str  # the environment variable that raises it, named in the refusal

    def refusal(self) -> str:
        return (
            f"The request body is larger than {_size(self.max_bytes)} ({self.max_bytes} bytes), "
            f"the limit set by {self.setting}. Send less, or raise the limit."
        )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit: FastAPI re-raises HTTP
    errors met while reading a body, so the route's problem handler answers the 413."""

    def __init__(self, limit: BodyLimit) -> None:
        super().__init__(413, limit.refusal())


@dataclass(frozen=True, slots=True)
class BodyLimits:
    default: BodyLimit
    execution: BodyLimit

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(
            default=BodyLimit(settings.max_request_body_bytes, "WEIR_MAX_REQUEST_BODY_BYTES"),
            execution=BodyLimit(settings.max_execution_body_bytes, "WEIR_MAX_EXECUTION_BODY_BYTES"),
        )

    def for_request(self, method: str, path: str) -> BodyLimit | None:
        """The limit of this request, or None where the route enforces its own."""
        if path.startswith("/execution/"):
            return self.execution
        return None if is_webhook_trigger(method, path) else self.default


def is_webhook_trigger(method: str, path: str) -> bool:
    """Whether this is the public, signed webhook trigger (``POST /api/v1/webhooks/{hook_id}``)."""
    return method == "POST" and _WEBHOOK_TRIGGER.match(path) is not None


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (None when absent; the server has checked its syntax)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Refuse request bodies over their limit (413 problem+json) without buffering them."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = None
        if scope["type"] == "http":
            limit = self.limits.for_request(scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > limit.max_bytes:
            await problem_response(413, limit.refusal())(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: BodyLimit) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as error:
            if started:  # too late for an answer: the connection is cut instead
                raise
            await problem_response(413, str(error.detail))(scope, receive, send)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"
