"""Coalescing: the claims, reports and log text a worker has ready at the same moment travel in
one ``POST /execution/v1/batch``, one transaction on the service.

There is no timer. A report (``finish``) never waits behind a batch in flight while one of the
``MAX_IN_FLIGHT`` send slots is free: it goes at once, with whatever else is ready. A finished
task's report that waited would die with a worker killed meanwhile, and the task would run again
(the chaos suite's poison task kills its worker just as the batch with its claim is answered).
Claims and log text have no such hurry: they start a batch of their own only when none is in
flight, and otherwise ride with the next report or go when the batch in flight is answered. So a
lone call (a chain's next task) goes at once, and under load batches grow by themselves and the
cost per task falls with them. A sender yields one turn of the event loop before it takes its
batch, so the items made ready together (the claims of one RabbitMQ prefetch) travel together.

Each item keeps the contract of its one-item call: its own answer (``AttemptRefused`` for a
refusal), and its own retry budget for transient failures (connection errors, timeouts, 5xx, 429),
after which it fails with ``ExecutionApiError``. After a transient failure no new batch starts
until the failed one's backoff is over (the service is struggling; more requests would not help).
A batch refused as too large (413) is sent again one item at a time, so only the item that is too
large fails (``BodyTooLarge``). The order that matters is kept by the callers, who await: an
attempt's log append is answered before its report is sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from weir.messages import ClaimItem, ExecutionBatchAnswer, FinishItem, ItemAnswer, LogItem

__all__ = ["BatchError", "BatchTooLarge", "Coalescer", "Item", "TransientBatchError"]

logger = logging.getLogger(__name__)

Item = ClaimItem | FinishItem | LogItem
Send = Callable[[bytes], Awaitable[httpx.Response]]

MAX_IN_FLIGHT = 4
"""Batches one worker keeps in flight at once. More than one, so that a report never waits behind
a slow batch (a claim burst, a large log) while a slot is free; few, because each batch holds one
of its API replica's database connections (a pool of 10 + 10) for its transaction, and a handful
of busy workers must leave some for the scheduler, the relay and other workers. Only reports open
a second slot: a batch of claims in flight makes the next claims wait and gather."""

MAX_ITEMS = 500
MAX_BYTES = 4 * 1024 * 1024
"""A batch stops growing at this size; a larger single item still goes, alone."""


class BatchError(Exception):
    """The service answered the batch with something no retry can change (e.g. 422)."""


class BatchTooLarge(BatchError):
    """The service refused the body as too large (413)."""


class TransientBatchError(Exception):
    """Worth another try: the service could not be reached, or answered 5xx or 429."""


@dataclass(eq=False)
class _Pending:
    item: Item
    body: bytes
    deadline: float
    future: asyncio.Future[ItemAnswer]
    alone: bool = False  # send in a batch of its own (after a 413)


@dataclass
class Backoff:
    first: float
    maximum: float
    tries: int = field(default=0)

    def next(self) -> float:
        delay = float(min(self.maximum, self.first * 2**self.tries)) + random.uniform(0, self.first)
        self.tries += 1
        return delay


class Coalescer:
    """Queues items and sends them in batches through ``send`` (one POST with the JSON body),
    at most ``MAX_IN_FLIGHT`` at once."""

    def __init__(
        self,
        send: Send,
        *,
        first_wait: float,
        max_wait: float,
        describe: Callable[[], str],
    ) -> None:
        self._send = send
        self._pending: list[_Pending] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._starting = False  # a sender is yielding its turn before it takes a batch
        self._backing_off = 0  # senders waiting out a backoff: no new batch starts meanwhile
        self._closed = False
        self._backoff = Backoff(first_wait, max_wait)
        self._describe = describe  # where the API is, for error messages
        self.batches = 0  # how many requests went out (the bench and tests read it)

    async def call(self, item: Item, budget: float) -> ItemAnswer:
        """Queue ``item`` and wait for its answer; raises ``TransientBatchError`` once its
        budget is spent, ``BatchError`` for an answer no retry can change."""
        loop = asyncio.get_running_loop()
        pending = _Pending(
            item, item.model_dump_json().encode(), loop.time() + budget, loop.create_future()
        )
        self._pending.append(pending)
        self._start_sender()
        return await pending.future

    async def aclose(self) -> None:
        """Stop sending: items queued or in flight are cancelled."""
        self._closed = True
        for sender in self._senders:
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        _cancel_all(self._pending)
        self._pending.clear()

    def _start_sender(self) -> None:
        """A new sender, if a batch may start and no sender is about to take one."""
        if self._closed or self._starting or not self._may_send(len(self._senders)):
            return
        self._starting = True
        sender = asyncio.create_task(self._run_sender(), name="execution-batches")
        self._senders.add(sender)
        sender.add_done_callback(self._sender_done)

    def _sender_done(self, sender: asyncio.Task[None]) -> None:
        self._senders.discard(sender)
        if not sender.cancelled() and sender.exception() is not None:
            logger.error("execution batch sender failed", exc_info=sender.exception())
        self._start_sender()  # what came while every slot was busy, if no sender took it

    async def _run_sender(self) -> None:
        """One slot: send batches while items wait (none while another sender backs off)."""
        try:
            await asyncio.sleep(0)  # one turn: the items made ready with the first travel with it
        finally:
            self._starting = False
        while self._may_send(len(self._senders) - 1) and (batch := self._take()):
            self._start_sender()  # what this batch could not hold goes in another slot at once
            if await self._send_batch(batch):
                self._backoff.tries = 0
                continue
            self._backing_off += 1
            try:
                await asyncio.sleep(self._backoff.next())
            finally:
                self._backing_off -= 1

    def _may_send(self, in_flight: int) -> bool:
        """Whether a batch may go now beside ``in_flight`` others: with a slot free, at once if
        a report waits; claims and log text only when nothing else is in flight."""
        if self._backing_off or not self._pending:
            return False
        if not in_flight:
            return True
        return in_flight < MAX_IN_FLIGHT and any(p.item.kind == "finish" for p in self._pending)

    def _take(self) -> list[_Pending]:
        """The next batch: the oldest items up to ``MAX_ITEMS``/``MAX_BYTES`` (at least one);
        items whose caller gave up are dropped."""
        self._pending = [p for p in self._pending if not p.future.done()]
        if not self._pending:
            return []
        if self._pending[0].alone:
            return [self._pending.pop(0)]
        size, count = 0, 0
        for pending in self._pending:
            if (
                pending.alone
                or count == MAX_ITEMS
                or (count and size + len(pending.body) > MAX_BYTES)
            ):
                break
            size, count = size + len(pending.body) + 1, count + 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def _send_batch(self, batch: list[_Pending]) -> bool:
        """Send one batch and settle its items; returns False after a transient failure (the
        items still within their budget wait for the next try, at the front of the queue)."""
        body = b'{"items":[' + b",".join(p.body for p in batch) + b"]}"
        self.batches += 1
        try:
            answers = _parse(await self._send(body), len(batch))
        except asyncio.CancelledError:  # the client is closing: its callers get no answer
            _cancel_all(batch)
            raise
        except TransientBatchError as error:
            self._retry_later(batch, error)
            return False
        except BatchTooLarge as error:
            self._split(batch, error)
            return True
        except BatchError as error:
            _settle_all(batch, error)
            return True
        except Exception as error:  # a bug below us: fail these items, keep the sender alive
            logger.exception("execution batch of %d item(s) failed unexpectedly", len(batch))
            _settle_all(batch, BatchError(repr(error)))
            return True
        for pending, answer in zip(batch, answers, strict=True):
            if not pending.future.done():
                pending.future.set_result(answer)
        return True

    def _split(self, batch: list[_Pending], error: BatchTooLarge) -> None:
        """Refused as too large: a lone item fails; several go again one by one."""
        if len(batch) == 1:
            _settle(batch[0], error)
            return
        for pending in batch:
            pending.alone = True
        self._pending[:0] = batch

    def _retry_later(self, batch: list[_Pending], error: TransientBatchError) -> None:
        now = asyncio.get_running_loop().time()
        keep = [p for p in batch if p.deadline > now and not p.future.done()]
        for pending in batch:
            if pending not in keep:
                _settle(pending, error)
        if keep:
            logger.warning(
                "execution batch of %d item(s) failed (%s); trying again (API at %s)",
                len(batch),
                error,
                self._describe(),
            )
            self._pending[:0] = keep


def _settle_all(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        _settle(pending, error)


def _cancel_all(batch: list[_Pending]) -> None:
    for pending in batch:
        pending.future.cancel()


def _settle(pending: _Pending, error: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)


def _parse(response: httpx.Response, count: int) -> list[ItemAnswer]:
    if response.status_code == 413:
        raise BatchTooLarge(f"413: {response.text[:300]}")
    if response.status_code == 429 or response.is_server_error:
        raise TransientBatchError(f"{response.status_code} {response.reason_phrase}")
    if not response.is_success:
        raise BatchError(f"{response.status_code}: {response.text[:500]}")
    try:
        answers = ExecutionBatchAnswer.model_validate_json(response.content).answers
    except ValueError as error:
        raise BatchError(f"the batch answer is not an ExecutionBatchAnswer: {error}") from error
    if len(answers) != count:
        raise BatchError(f"the batch answer has {len(answers)} answers for {count} items")
    return answers
