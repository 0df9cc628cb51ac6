"""Dependencies of the HTTP routes, as ``Annotated`` aliases: the only dependency injection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.effects import effects_of
from app.state import ServiceState

__all__ = ["Service", "Session", "get_service", "service_of"]


def service_of(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.weir
    return state


async def get_service(request: Request) -> ServiceState:
    """``service_of`` as a dependency. Async on purpose, as every dependency: FastAPI runs a
    plain ``def`` one in a thread pool, a thread hand-off on every request
    (``tests/unit/test_async_dependencies.py``)."""
    return service_of(request)


Service = Annotated[ServiceState, Depends(get_service)]


async def _session(service: Service) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed if the route returns, rolled back if it raises.

    A route that changed what the scheduler should act on calls ``wake_scheduler(session)``; the
    local scheduler is woken only after the commit (from the transaction's effects), so it never
    looks before the change is visible.
    """
    async with service.database.sessions() as session:
        effects = effects_of(session)
        async with session.begin():
            yield session
        if effects.scheduler is not None:
            service.scheduler_wakeup.notify(full=effects.scheduler)
        if effects.relay:
            service.outbox_ready.notify()


# scope="function": the transaction commits when the route returns, before the response is sent.
# A worker told "claimed" must find the claim committed when it calls again a millisecond later.
Session = Annotated[AsyncSession, Depends(_session, scope="function")]
