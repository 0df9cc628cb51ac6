"""The lease: while an attempt runs, renew it every ``heartbeat_interval`` seconds.

A refused heartbeat (409) means the attempt was fenced off: the service failed it as a zombie, a
user cleared or marked it, or another worker holds it now. The running attempt is then cancelled
and reports nothing. Cancelling stops an async task at its next ``await``, kills a shell task's
process group, and kills a sync task's child process (see ``process_pool.py``).

Other failures (the API unreachable for longer than the client's retry budget) are logged and the
next beat tries again: if they last longer than the lease, the service fails the attempt as a
zombie and the next heartbeat is refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from weir.messages import ClaimAccepted, HeartbeatRequest, TaskMessage
from workers.client import AttemptRefused, ExecutionApiError, ExecutionClient
from workers.identity import attempt_label

__all__ = ["Lease"]

logger = logging.getLogger(__name__)


class Lease:
    """Keeps one attempt's lease alive; ``is_fenced`` tells whether the service took it away."""

    def __init__(self, client: ExecutionClient, message: TaskMessage, claim: ClaimAccepted) -> None:
        self._client = client
        self._message = message
        self._interval = claim.heartbeat_interval
        self._label = attempt_label(message)
        self.is_fenced = False

    async def keep(self, running: asyncio.Task[Any]) -> None:
        """Heartbeat until cancelled; cancel ``running`` if the service refuses a heartbeat."""
        body = HeartbeatRequest(attempt=self._message.attempt)
        while not running.done():
            # The lease's own clock, not a hot path: sleeping here is what a lease is.
            await asyncio.sleep(self._interval)
            try:
                await self._client.heartbeat(
                    self._message.task_instance_id, self._message.token, body
                )
            except AttemptRefused as exc:
                logger.warning(
                    "%s: heartbeat refused (%s); stopping the attempt, it reports nothing",
                    self._label,
                    exc,
                )
                self.is_fenced = True
                running.cancel()
                return
            except (ExecutionApiError, httpx.HTTPError) as exc:
                logger.warning("%s: heartbeat failed (%s); will try again", self._label, exc)
            except Exception:  # a bug: keep beating rather than let the lease lapse
                logger.exception("%s: heartbeat failed unexpectedly; will try again", self._label)
