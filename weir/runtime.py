"""Process plumbing shared by the CLI's long-running commands: logging set-up, the stop event
wired to SIGINT/SIGTERM, and a uvicorn server that leaves signals to us.

Signals are handled here, once, at the top; every component below takes a ``stop`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["QuietServer", "configure_logging", "run_event_loop", "stop_on_signals"]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("aiormq", "aio_pika", "httpx", "watchfiles", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (uvicorn's standard extras bring it) and not turned off with
    ``WEIR_EVENT_LOOP=asyncio``: its callbacks, sockets and timers cost a fraction of the
    standard loop's, which is most of what a no-op task costs the API and the worker."""
    if os.environ.get("WEIR_EVENT_LOOP", "auto").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_event_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest event loop available (see ``_loop_factory``)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coroutine)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on the first SIGINT/SIGTERM; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def first(signum: int) -> None:
        logging.getLogger("weir").info("received %s: stopping", signal.Signals(signum).name)
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, os._exit, 130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first, sig)


def _import_uvicorn() -> Any:
    import uvicorn

    return uvicorn


GRACEFUL_SHUTDOWN_SECONDS = 10
"""How long a stopping server lets open requests finish before cancelling them (a safety net:
event streams end at once through ``on_shutdown``)."""

DEFAULT_HEAD_TIMEOUT = 10.0
"""Seconds a client may take to send a request's line and headers (Settings' default too)."""


class QuietServer:
    """A uvicorn server that does not install signal handlers (``stop_on_signals`` owns them)."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        log_level: str,
        *,
        on_shutdown: Callable[[], None] | None = None,
        head_timeout: float = DEFAULT_HEAD_TIMEOUT,
        parser: str = "auto",
    ) -> None:
        """``on_shutdown`` runs when a shutdown starts, before uvicorn waits for open connections
        to finish: the place to end long-lived responses (the dashboard's event streams).
        ``head_timeout``: seconds a client may take to send a request's head
        (``weir.http_head_timeout``; the CLI passes ``Settings.request_head_timeout``).
        ``parser``: ``auto`` (httptools when installed) or ``h11``."""
        uvicorn = _import_uvicorn()
        from weir.http_head_timeout import with_head_timeout

        self._on_shutdown = on_shutdown

        class _Server(uvicorn.Server):  # type: ignore[misc,name-defined]
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level.lower(), access_log=False,
            lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            http=with_head_timeout(head_timeout, parser=parser),
        )  # fmt: skip
        self._server = _Server(config)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    async def serve(self) -> None:
        await self._server.serve()

    def shutdown(self) -> None:
        if self._on_shutdown is not None and not self._server.should_exit:
            self._on_shutdown()
        self._server.should_exit = True
