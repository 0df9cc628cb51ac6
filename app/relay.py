"""The outbox relay: publishes task messages written by committed transactions, then deletes them.

Woken by whoever queued work; a periodic sweep picks up rows a crashed replica left. One statement
takes and deletes a batch; the broker's confirms are awaited before that transaction commits, so
a crash or a failed publish in between leaves the rows (the delete rolls back) and they are
published again (harmless: attempts are fenced) rather than a wake-up lost (invariant 3).

The relay signs: a task message is stored without its attempt token (``app.db.outbox``) and gets
it here, as it leaves, so the secret key is used by the service's edge and not its database
layer. A row written by an older release, token included, leaves as it is (replicas share the key).
"""

from __future__ import annotations

import asyncio
import logging

from app.db.engine import Database
from app.db.outage import OUTAGE_RETRY, UNAVAILABLE
from app.db.outbox import OutboxRow, attempt_of, take_outbox_batch
from app.execution.tokens import AttemptTokens
from app.scheduler.wakeup import Wakeup
from weir.broker import Broker, OutgoingMessage
from weir.errors import BrokerError

__all__ = ["OutboxRelay"]

_TOKEN = b'"token":'
"""The token as a member of the message's JSON: ``TaskMessage``'s last field, so a stored body
with it appended is byte for byte what ``TaskMessage.model_dump_json()`` gives (a test holds
this). Only a member name can contain it: in a string value the quote would be escaped."""

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        database: Database,
        broker: Broker,
        outbox_ready: Wakeup,
        *,
        tokens: AttemptTokens,
        sweep_interval: float,
        batch_size: int = 500,
    ) -> None:
        self._database = database
        self._broker = broker
        self._outbox_ready = outbox_ready
        self._tokens = tokens
        self._sweep_interval = sweep_interval
        self._batch_size = batch_size
        self.published = 0
        self.publish_error: str | None = None  # the last failure until a publish works (reasons)

    @property
    def broker(self) -> Broker:
        return self._broker

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.publish_once()
            except BrokerError as error:
                log.warning("cannot publish task messages (%s); retrying in 1 s", error)
                self.publish_error = str(error)
                await self._outbox_ready.wait(1.0)
                continue
            except UNAVAILABLE:  # the outage is logged once, by app.db.outage
                await self._outbox_ready.wait(OUTAGE_RETRY)
                continue
            except Exception:
                log.exception("outbox relay failed; retrying after the next wake-up")
                sent = 0
            if sent < self._batch_size:  # all taken: wait rather than look again at once
                await self._outbox_ready.wait(self._sweep_interval)

    async def publish_once(self) -> int:
        """Publish and delete one batch; returns how many messages went out."""
        async with self._database.sessions.begin() as session:
            rows = await take_outbox_batch(session, self._batch_size)
            if not rows:
                return 0
            await self._broker.publish([self._outgoing(row) for row in rows])
        self.publish_error = None
        self.published += len(rows)
        return len(rows)

    def _outgoing(self, row: OutboxRow) -> OutgoingMessage:
        """The message as the broker takes it: a task message signed for its attempt."""
        body = row.body
        attempt = attempt_of(row.message_id)
        if attempt is not None and body.endswith(b"}") and _TOKEN not in body:
            token = self._tokens.issue(*attempt).encode()
            body = b"%s,%s%s}" % (body[:-1], _TOKEN, b'"%s"' % token)
        return OutgoingMessage(
            queue=row.queue, body=body, message_id=row.message_id, priority=row.priority
        )

    async def run_until_idle(self) -> int:
        total = 0
        while sent := await self.publish_once():
            total += sent
        return total
