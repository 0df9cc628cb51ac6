"""Security headers on every answer: what the browser may load, frame, sniff, send and keep.

The dashboard runs no inline script (behaviour lives in ``frontend/static/js``; htmx's ``hx-on``
and its injected indicator ``<style>`` are not used), so its policy allows scripts and style
sheets from this origin only. Style *attributes* stay allowed (``style-src-attr``): the Gantt
bars and the graph's width are geometry computed on the server, and a style attribute cannot run
code. FastAPI's ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from their CDN with an
inline bootstrap script, so they get their own, wider policy; they hold no data. Every answer
but the static files is ``Cache-Control: no-store``: pages and API answers are per user and may
hold secrets, so no browser or proxy cache keeps them.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["APP_POLICY", "DOCS_POLICY", "SecurityHeaders"]

APP_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
DOCS_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com",
        "font-src 'self' https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
_DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        policy = DOCS_POLICY if path in _DOCS_PATHS else APP_POLICY
        is_static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _COMMON.items():
                    headers[name] = value
                headers["Content-Security-Policy"] = policy
                if not is_static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
