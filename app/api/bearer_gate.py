"""Refuse a request body that comes without a valid token, before a byte of it is read.

FastAPI reads and parses a route's body before it solves the route's dependencies, so without
this gate an anonymous caller could make the server buffer a body (up to its limit) and would be
told its JSON is malformed (422) before being told it is not signed in (401). The gate looks only
at requests that carry a body:

- ``/api/v1``: the bearer token must be a live API token (one indexed read). The signed webhook
  trigger is public and passes. The route still authorises the call (role included): the gate
  only answers earlier, and when it cannot decide (the database is down) it lets the route decide.
- ``/execution/v1/task-instances/…``: an attempt token must be present. Its signature covers the
  attempt number, which is in the body, so the route checks it.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.body_limit import declared_length, is_webhook_trigger
from app.api.problems import problem_response
from app.auth import authenticate
from app.state import ServiceState

__all__ = ["BearerGate"]

log = logging.getLogger(__name__)

_MISSING = "Send an API token: Authorization: Bearer <token>."
_UNKNOWN = "The API token is unknown, revoked or expired."
_MISSING_ATTEMPT = "Missing attempt token."


class BearerGate:
    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = None
        if scope["type"] == "http" and _has_body(scope):
            refusal = await self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = problem_response(401, refusal)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    async def _refusal(self, scope: Scope) -> str | None:
        """Why this request is refused before its body, or None to let it through."""
        path: str = scope["path"]
        token = _bearer(scope)
        if path.startswith("/execution/v1/task-instances/"):
            return _MISSING_ATTEMPT if token is None else None
        if not path.startswith("/api/") or is_webhook_trigger(scope["method"], path):
            return None
        if token is None:
            return _MISSING
        return None if await self._is_live(token) else _UNKNOWN

    async def _is_live(self, token: str) -> bool:
        """Whether ``token`` is a live API token; True when the database cannot say, so that the
        route answers (its dependency authenticates again, and maps an outage to its answer)."""
        try:
            async with self.state.database.sessions() as session:
                found = await authenticate(session, token, self.state.clock.now())
        except Exception as error:  # the route's own authentication decides and reports
            log.debug("token check before the body deferred to the route: %s", error)
            return True
        return found is not None


def _has_body(scope: Scope) -> bool:
    declared = declared_length(scope)
    if declared is not None:
        return declared > 0
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return (token.strip() or None) if scheme.lower() == "bearer" else None
    return None
