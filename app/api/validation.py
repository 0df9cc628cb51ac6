"""Field types shared by the REST models, and the one check of path and query strings, so hostile
input stops at validation (a 4xx) wherever it comes in.

PostgreSQL refuses NUL characters in text: a value containing one must never reach it. Bodies are
checked by their models (``NO_NUL``); path and query parameters by ``RefuseNulParameters``, in
front of every route, so that no route can forget it and both backends answer the same.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import problem_response

__all__ = ["NO_NUL", "Description", "Name", "RefuseNulParameters"]

NO_NUL = r"^[^\x00]*$"
"""A pattern admitting any text without a NUL character."""

Description = Annotated[str, Field(max_length=5000, pattern=NO_NUL)]
"""Free text written by people."""

Name = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")]
"""An identifier chosen by people: letters, digits, ``_``, ``.`` and ``-``."""


class RefuseNulParameters:
    """ASGI middleware: a request whose path or query string holds a NUL character (``%00``) is
    answered 422 with a problem+json body (as a parameter failing its pattern is) before any route
    sees it. No name or value in Weir may contain one, and PostgreSQL would refuse it with an
    error rather than a "not found"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            detail = (
                "The request's path or query string contains a NUL character (%00); no Weir "
                "name or value may contain one. Remove it and send the request again."
            )
            await problem_response(422, detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    query: bytes = scope.get("query_string", b"")
    return "\x00" in path or b"\x00" in query or b"%00" in query
