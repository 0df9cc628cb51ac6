"""An attempt's log: buffered as the task writes it, shipped to the execution API while it runs.

``write`` is synchronous and cheap (any thread may call it). A shipper task wakes when text
arrives, lingers a moment to gather more (``LINGER``), and sends everything buffered in one
request, so a chatty task costs few requests and a short one none: what is left when the task ends
(``tail()``) travels with the finish report instead. Task lines are echoed to this module's logger
at DEBUG. Secrets the task fetched (``masker``) are masked in every write before it is buffered
or echoed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from urllib.parse import quote

import httpx

from weir.messages import LogAppend, TaskMessage
from weir.resources import MASK
from workers.client import AttemptRefused, ExecutionApiError, ExecutionClient
from workers.identity import attempt_label

__all__ = ["AttemptLog", "SecretMasker"]

logger = logging.getLogger(__name__)

MAX_REQUEST_CHARS = 512 * 1024
LINGER = 0.25
"""Seconds between text arriving and its shipment: live enough for a person watching the log,
and a no-op task's log is never shipped on its own (it rides with the finish report)."""


MIN_MASKED_CHARS = 5
"""Shorter values are not masked (Airflow's rule): masking "1" or "yes" everywhere would wreck the
log and hint at the value more than it hides it."""


class SecretMasker:
    """Replaces every secret it was given, and its URL-encoded form, with ``***``."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        """Mask these values from now on (too short ones are ignored)."""
        new = {form for value in values if len(value) >= MIN_MASKED_CHARS
               for form in (value, quote(value, safe=""))} - self._secrets  # fmt: skip
        if new:
            self._secrets |= new
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))

    def mask(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)


class AttemptLog:
    """The log buffer of one attempt (create it on the event loop that ships it)."""

    def __init__(self, client: ExecutionClient, message: TaskMessage) -> None:
        self._client = client
        self._message = message
        self._label = attempt_label(message)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._chunks: list[str] = []
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._refused = False
        self.masker = SecretMasker()
        """Secrets the attempt's task fetched; masked in every line written from then on."""

    def write(self, text: str) -> None:
        """Append ``text`` to the log; returns at once."""
        if not text:
            return
        if threading.get_ident() == self._loop_thread:
            self._append(text)
            return
        with suppress(RuntimeError):  # the loop closed: the worker is gone, and so is the log
            self._loop.call_soon_threadsafe(self._append, text)

    @asynccontextmanager
    async def shipping(self) -> AsyncIterator[AttemptLog]:
        """Ship the log while the block runs; after a normal exit, what was not shipped yet is in
        ``tail()``. After an exception or cancellation, shipping stops at once."""
        shipper = asyncio.create_task(self._ship())
        try:
            yield self
        except BaseException:
            shipper.cancel()
            with suppress(asyncio.CancelledError):
                await shipper
            raise
        self._closing = True
        self._closed.set()
        self._wakeup.set()
        await shipper
        # The tail rides with the finish report, whose body the API bounds: ship any excess.
        await self._send_buffered(keep=MAX_REQUEST_CHARS)

    def tail(self) -> str | None:
        """The text not shipped yet, for the finish report (None if there is none to send)."""
        if self._refused or not self._chunks:
            return None
        data = "".join(self._chunks)
        self._chunks.clear()
        return data

    def _append(self, text: str) -> None:
        text = self.masker.mask(text)
        if not self._refused:
            self._chunks.append(text)
            self._wakeup.set()
        if logger.isEnabledFor(logging.DEBUG):
            for line in text.splitlines():
                if line.strip():
                    logger.debug("%s | %s", self._label, line)

    async def _ship(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            with suppress(TimeoutError):
                async with asyncio.timeout(LINGER):
                    await self._closed.wait()
            self._wakeup.clear()
            if not self._closing:
                await self._send_buffered()

    async def _send_buffered(self, keep: int = 0) -> None:
        """Ship the buffer in requests of at most ``MAX_REQUEST_CHARS`` until ``keep`` or fewer
        characters are left."""
        while sum(map(len, self._chunks)) > keep and not self._refused:
            data = "".join(self._chunks)
            self._chunks.clear()
            batch, rest = data[:MAX_REQUEST_CHARS], data[MAX_REQUEST_CHARS:]
            if rest:
                self._chunks.append(rest)
            if not await self._send(batch):
                self._chunks.insert(0, batch)
                return

    async def _send(self, data: str) -> bool:
        """Whether ``data`` is settled: sent, or dropped because the attempt was fenced off."""
        message = self._message
        body = LogAppend(attempt=message.attempt, data=data)
        try:
            await self._client.append_log(message.task_instance_id, message.token, body)
        except AttemptRefused as exc:
            logger.info("%s: log refused, the attempt is no longer current (%s)", self._label, exc)
            self._refused = True
            self._chunks.clear()
        except (ExecutionApiError, httpx.HTTPError) as exc:
            logger.warning("%s: could not ship log (%s); will try again", self._label, exc)
            return False
        except Exception:  # a bug must cost log lines, never the attempt's report
            logger.exception("%s: dropped %d characters of log", self._label, len(data))
        return True
