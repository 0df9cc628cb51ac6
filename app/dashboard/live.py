"""Live pages: one server-sent-event stream per page, fed by the change feed (``app.live``).

A page names its live view and parameters (``sse-connect="/ui/live/dags?…&v={{
live_since(request) }}"``, the last saying where the state stood when the page was rendered);
each view is a
function that renders the page's live fragments (name -> HTML). The stream renders them when it
connects and again after every committed change, and sends only the fragments whose HTML
changed, each as an SSE event of that name that htmx swaps in (``sse-swap="<name>"``). No client
polls; a burst of changes costs one render per open page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from app.api.deps import Service
from app.dashboard.sessions import UiSession, UiViewer
from app.db.outage import UNAVAILABLE
from weir.errors import NotFound

__all__ = ["LiveView", "live_view", "router"]

router = APIRouter(include_in_schema=False)

LiveView = Callable[
    [Request, AsyncSession, UiSession, Mapping[str, str]], Awaitable[dict[str, str]]
]
"""Renders one page's live fragments: ``(request, session, ui, query) -> {name: html}``."""

_VIEWS: dict[str, LiveView] = {}
KEEPALIVE_SECONDS = 15.0


def live_view(name: str) -> Callable[[LiveView], LiveView]:
    """Register a page's fragment renderer under ``name`` (``/ui/live/<name>``)."""

    def register(view: LiveView) -> LiveView:
        _VIEWS[name] = view
        return view

    return register


@router.get("/ui/live/{view}")
async def stream(
    view: str, request: Request, service: Service, ui: UiViewer
) -> EventSourceResponse:
    renderer = _VIEWS.get(view)
    if renderer is None:
        raise NotFound(f"No live view {view!r}.")
    params = dict(request.query_params)
    feed = service.database.changes
    # The page says where the state stood when it was rendered (``live_since``): if nothing has
    # changed since, its fragments are current, and sending them again would only replace what
    # the user may be working on. Counted from now, not from when the stream's first render runs,
    # so a change in between is never absorbed into a render that is not sent.
    seen_at_connect = feed.state_version
    page_was_current = params.pop("v", None) == f"{feed.id}.{seen_at_connect}"

    async def events() -> AsyncIterator[dict[str, Any]]:
        sent: dict[str, str] = {}
        seen = seen_at_connect
        quiet = page_was_current
        while not feed.closed and not await request.is_disconnected():
            try:
                async with service.database.sessions() as session:
                    fragments = await renderer(request, session, ui, params)
            except UNAVAILABLE:  # an outage (logged once): the page stays open, renders later
                fragments = {}
            if quiet and feed.state_version != seen_at_connect:
                quiet = False  # something changed before or while rendering: send it all
            for name, html in fragments.items():
                if sent.get(name) != html:
                    sent[name] = html
                    if not quiet:
                        yield {"event": name, "data": html}
            quiet = False
            seen = await feed.wait(seen, timeout=KEEPALIVE_SECONDS)

    return EventSourceResponse(events(), ping=KEEPALIVE_SECONDS)
