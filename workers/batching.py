"""Coalescing: the claims, reports and log text a worker has ready at the same moment travel in
one ``POST /execution/v1/batch``, one transaction on the service.

There is no timer: one batch is in flight at a time, and whatever becomes ready while it is in
flight goes in the next one. A lone call (a chain's next task) goes out at once; under load,
batches grow by themselves, and the cost per task falls with them.

Each item keeps the contract of its one-item call: its own answer (``AttemptRefused`` for a
refusal), and its own retry budget for transient failures (connection errors, timeouts, 5xx, 429),
after which it fails with ``ExecutionApiError``. A batch refused as too large (413) is sent again
one item at a time, so only the item that is too large fails (``BodyTooLarge``).
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
    """Queues items and sends them in batches through ``send`` (one POST with the JSON body)."""

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
        self._ready = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._first_wait, self._max_wait = first_wait, max_wait
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
        self._ready.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="execution-batches")
        return await pending.future

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        for pending in self._pending:
            if not pending.future.done():
                pending.future.cancel()

    async def _flush(self) -> None:
        backoff = Backoff(self._first_wait, self._max_wait)
        while True:
            await self._ready.wait()
            self._ready.clear()
            while batch := self._take():
                if await self._send_batch(batch):
                    backoff.tries = 0
                else:
                    await asyncio.sleep(backoff.next())

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
            self._ready.set()


def _settle_all(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        _settle(pending, error)


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
