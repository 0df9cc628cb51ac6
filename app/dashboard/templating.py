"""Jinja2 templates from the ``frontend`` package (installed with Weir, so no build step).

Pages render through ``render``: every template gets the signed-in ``ui`` session (for the CSRF
token and for showing only the buttons the role allows) and the request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import frontend
from app.dashboard.sessions import UiSession

__all__ = ["STATIC_DIR", "render", "templates"]

FRONTEND = Path(frontend.__file__).parent
STATIC_DIR = FRONTEND / "static"
templates = Jinja2Templates(directory=FRONTEND / "templates")


def _ago(moment: datetime | None) -> str:
    """'3 min ago', 'in 2 h': how people read times on a status page."""
    if moment is None:
        return "—"
    seconds = (moment - datetime.now(UTC)).total_seconds()
    future, seconds = seconds > 0, abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or unit == "s":
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return "now"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "—"
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _live_since(request: Request) -> str:
    """Where the state stood as this page was rendered: its live stream's ``v`` parameter."""
    mark: str = request.app.state.weir.database.changes.state_mark
    return mark


templates.env.globals["live_since"] = _live_since
templates.env.filters["ago"] = _ago
templates.env.filters["duration"] = _duration
templates.env.filters["utc"] = _utc


def render(
    request: Request,
    template: str,
    ui: UiSession | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page or fragment; ``ui`` is ``None`` only on the login page."""
    return templates.TemplateResponse(
        request, template, {"ui": ui, **context}, status_code=status_code
    )
