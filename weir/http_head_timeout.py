"""uvicorn's HTTP protocols with a deadline for each request's head (its line and headers).

uvicorn (0.55) has no such deadline: a new connection may stay silent, or send its headers one
byte a minute, for ever ("slowloris"), each holding a socket and a little memory. Its keep-alive
timeout covers only the idle time between two requests, and the first byte of a request cancels
it. This protocol arms a timer whenever the connection waits for a request head (on connect, and
after each answer) and closes the connection if the head is not complete in time. A body being
read, or an answer being made, is not timed here: the body limits bound what a body costs.

Two variants, one per uvicorn parser: ``httptools`` (C, from uvicorn's standard extras; what
``weir api`` uses, several times cheaper per request) and ``h11`` (pure Python, kept and tested
as the reference). Both behave the same.

Imported only by ``weir.runtime`` when a server is built (uvicorn is a heavy import).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeadTimeoutProtocol", "HttpToolsHeadTimeoutProtocol", "with_head_timeout"]

log = logging.getLogger(__name__)


class HeadTimeoutProtocol(H11Protocol):
    """Closes a connection whose request head takes longer than ``head_timeout`` seconds."""

    head_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Time the head while h11 waits for one (IDLE); stop once it is in."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif not waiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug(
                "closing %s: no complete request head in %g s", self.client, self.head_timeout
            )
            self.transport.close()


class HttpToolsHeadTimeoutProtocol(HttpToolsProtocol):
    """The same deadline on httptools: armed while no request is being read or answered,
    stopped when a head is complete."""

    head_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        busy = self.cycle is not None and not self.cycle.response_complete
        return not busy and not self.pipeline and not self.transport.is_closing()

    def _arm(self) -> None:
        if self._head_timer is None and self._idle():
            self._head_timer = self.loop.call_later(self.head_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self._idle():
            log.debug(
                "closing %s: no complete request head in %g s", self.client, self.head_timeout
            )
            self.transport.close()


def with_head_timeout(seconds: float, *, parser: str = "auto") -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's ``http`` option, with this deadline: httptools
    (``parser="auto"``), or h11 (``parser="h11"``, pure Python)."""
    base: type[asyncio.Protocol] = HttpToolsHeadTimeoutProtocol
    if parser == "h11":
        base = HeadTimeoutProtocol
    return type(base.__name__, (base,), {"head_timeout": seconds})
