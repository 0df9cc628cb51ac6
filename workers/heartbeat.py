"""Leases: while attempts run, renew all of them every ``heartbeat_interval`` seconds in one
request (``POST /execution/v1/heartbeats``), so a short lease costs one request per worker per
beat, not one per attempt.

A refused beat means the attempt was fenced off: the service ran it again after its lease lapsed, a
user cleared or marked it, or another worker holds it now. That attempt is then cancelled and
reports nothing. Cancelling stops an async task at its next ``await``, kills a shell task's
process group, and kills a sync task's child process (see ``process_pool.py``).

Other failures (the API unreachable for longer than the client's retry budget) are logged and the
next beat tries again: if they last longer than the lease, the service runs the attempt again
elsewhere and the next beat is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from weir.messages import ClaimAccepted, HeartbeatBatch, HeartbeatBeat, TaskMessage
from workers.client import ExecutionApiError, ExecutionClient
from workers.identity import attempt_label

__all__ = ["Lease", "LeaseKeeper"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class Lease:
    """One running attempt's lease; ``is_fenced`` tells whether the service took it away."""

    message: TaskMessage
    interval: float
    running: asyncio.Task[Any] | None = None  # the attempt, once started
    is_fenced: bool = False
    reporting: bool = False  # its report is on its way: a beat crossing it may be refused

    def fence(self) -> None:
        """The service refused the attempt: stop it; it reports nothing. A refusal that crossed
        the attempt's own report on the wire (the report was recorded first) is no news."""
        if self.reporting:
            logger.debug("%s: heartbeat crossed the report", attempt_label(self.message))
            return
        logger.warning(
            "%s: heartbeat refused (the attempt is no longer current); stopping it, it reports "
            "nothing",
            attempt_label(self.message),
        )
        self.is_fenced = True
        if self.running is not None:
            self.running.cancel()


class LeaseKeeper:
    """Keeps the leases of every attempt a worker runs; ``run`` beats until cancelled."""

    def __init__(self, client: ExecutionClient) -> None:
        self._client = client
        self._leases: dict[int, Lease] = {}
        self._held = asyncio.Event()

    @contextmanager
    def hold(self, message: TaskMessage, claim: ClaimAccepted) -> Iterator[Lease]:
        """Renew this attempt's lease while the block runs (its run and its report)."""
        lease = Lease(message, claim.heartbeat_interval)
        self._leases[message.task_instance_id] = lease
        self._held.set()
        try:
            yield lease
        finally:
            if self._leases.get(message.task_instance_id) is lease:
                del self._leases[message.task_instance_id]

    async def run(self) -> None:
        """Beat every interval while leases are held; idle (no timer) while none are."""
        while True:
            if not self._leases:
                self._held.clear()
                await self._held.wait()
            # The lease's own clock, not a hot path: sleeping here is what a lease is.
            await asyncio.sleep(min(lease.interval for lease in self._leases.values()))
            await self.beat()

    async def beat(self) -> None:
        """Renew every held lease in one request; stop the attempts the service refuses."""
        leases = dict(self._leases)
        if not leases:
            return
        batch = HeartbeatBatch(
            beats=[
                HeartbeatBeat(
                    task_instance_id=ti_id, attempt=lease.message.attempt, token=lease.message.token
                )
                for ti_id, lease in leases.items()
            ]
        )
        try:
            accepted = await self._client.heartbeats(batch)
        except (ExecutionApiError, httpx.HTTPError) as exc:
            logger.warning(
                "Heartbeat of %d attempt(s) failed (%s); will try again", len(leases), exc
            )
            return
        except Exception:  # a bug: keep beating rather than let the leases lapse
            logger.exception("Heartbeat failed unexpectedly; will try again")
            return
        for ti_id in accepted.refused:
            lease = leases.get(ti_id)
            if lease is not None and self._leases.get(ti_id) is lease:
                lease.fence()
