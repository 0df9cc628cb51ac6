"""One task message, start to end: claim → ack → run (heartbeats, log shipping) → report.

``AttemptHandler.handle`` is the error boundary for a task message (invariants 2 and 7); a
message that cannot be parsed never gets here (``workers.dag_callbacks`` dead-letters it):

- the worker acks only once the execution API has answered the claim: accepted → ack, then run;
  refused → ack and drop (a duplicate, or an attempt that is no longer current), or dead-letter
  when no claim could ever succeed (401: the token is not valid; 404: no such task instance);
  no answer → nack, so the message comes back;
- once stopping, a message not yet claimed is nacked, and an attempt claimed but not yet started
  is handed back through ``release``;
- the outcome is reported with ``finish`` after the log has been flushed; a fenced-off attempt
  reports nothing; one the worker abandons (its grace period ended) is reported ``interrupted``,
  so it runs again at once.

No exception escapes but the cancellation with which the worker abandons an attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import reprlib
from collections.abc import Awaitable, Callable

from weir.broker import Delivery
from weir.messages import ClaimAccepted, ClaimRequest, FinishRequest, ReleaseRequest, TaskMessage
from weir.resources import Connection, ResourceKind, VariableValue, use_resources
from workers.callbacks import run_task_callback
from workers.capture import log_line
from workers.client import AttemptRefused, BodyTooLarge, ExecutionClient
from workers.heartbeat import Lease, LeaseKeeper
from workers.identity import attempt_label
from workers.logs import AttemptLog
from workers.outcome import Outcome
from workers.result_masking import mask_result
from workers.runners import Runner

__all__ = ["AttemptHandler", "AttemptResources"]

logger = logging.getLogger(__name__)

INTERRUPTED_REPORT_TIMEOUT = 5.0
"""How long an abandoned attempt's report may take: the worker is shutting down."""

_TOO_LARGE = (
    "The attempt's report was refused as too large ({reason}): its return value is "
    "bigger than the service accepts (WEIR_MAX_EXECUTION_BODY_BYTES). Return a reference to the "
    "data (a path, a URL, a key) rather than the data itself."
)

_UNCLAIMABLE = frozenset({401, 404})
"""Claim refusals that no retry can change (a forged or corrupt token, a task instance that does
not exist): such a message is dead-lettered, where an operator can see it."""

_result_repr = reprlib.Repr()
_result_repr.maxstring = _result_repr.maxother = 500


class AttemptHandler:
    """Handles the messages of one worker; ``stop`` set means the worker is shutting down."""

    def __init__(
        self,
        *,
        client: ExecutionClient,
        runner: Runner,
        leases: LeaseKeeper,
        worker: str,
        stop: asyncio.Event,
    ) -> None:
        self._client = client
        self._leases = leases
        self._runner = runner
        self._worker = worker
        self._stop = stop
        self._held: set[tuple[int, int]] = set()  # (task instance, attempt) claimed or running

    async def handle(self, delivery: Delivery, message: TaskMessage) -> None:
        """Settle the message (parsed once, by ``workers.dag_callbacks``) and see its attempt
        through; never raises."""
        try:
            held = (message.task_instance_id, message.attempt)
            if held in self._held:
                await self._drop_duplicate(delivery, message)
                return
            self._held.add(held)
            try:
                await self._see_through(delivery, message)
            finally:
                self._held.discard(held)
        except Exception:
            logger.exception("Unexpected error handling a message from queue %s", delivery.queue)

    async def _drop_duplicate(self, delivery: Delivery, message: TaskMessage) -> None:
        """A second copy of a message this worker already holds (the outbox relay publishes
        again when it could not delete its row): the claim would be the worker's own and so
        accepted, and the attempt would run twice here. Drop it instead."""
        logger.info(
            "%s: already running here; dropping a duplicate message", attempt_label(message)
        )
        await _settle(delivery.ack, "ack", message)

    async def _see_through(self, delivery: Delivery, message: TaskMessage) -> None:
        """Claim, ack, run and report one attempt."""
        claim = await self._claim(delivery, message)
        if claim is None:
            return
        await _settle(delivery.ack, "ack", message)
        if self._stop.is_set():
            await self._release(message)
            return
        # The lease is held until the report is answered: a report waiting for the log to
        # reach a recovering service must not let the attempt lapse meanwhile.
        with self._leases.hold(message, claim) as lease:
            outcome, log_tail = await self._run(message, claim, lease)
            if outcome is not None:
                lease.reporting = True
                await self._report(message, claim, outcome, log_tail)

    async def _claim(self, delivery: Delivery, message: TaskMessage) -> ClaimAccepted | None:
        label = attempt_label(message)
        if self._stop.is_set():
            logger.info("%s: stopping, returning the unclaimed message to its queue", label)
            await _settle(delivery.nack, "nack", message)
            return None
        request = ClaimRequest(attempt=message.attempt, worker=self._worker)
        try:
            return await self._client.claim(message.task_instance_id, message.token, request)
        except AttemptRefused as exc:
            if exc.status_code in _UNCLAIMABLE:
                logger.error("%s: claim refused (%s); dead-lettering the message", label, exc)
                await _settle(delivery.dead_letter, "dead-letter", message)
            else:
                logger.info("%s: claim refused (%s); dropping the message", label, exc)
                await _settle(delivery.ack, "ack", message)
        except Exception as exc:
            logger.error("%s: claim failed (%s); returning the message to its queue", label, exc)
            await _settle(delivery.nack, "nack", message)
        return None

    async def _run(
        self, message: TaskMessage, claim: ClaimAccepted, lease: Lease
    ) -> tuple[Outcome | None, str | None]:
        """Run with the log shipped and the lease kept; the outcome (``None`` if the attempt was
        fenced off) and the end of the log, which goes with the report."""
        label = attempt_label(message)
        logger.info("%s: running (%s task from %s)", label, claim.kind.value, claim.fileloc)
        log = AttemptLog(self._client, message)
        async with log.shipping():
            log.write(log_line(logging.INFO, f"{label}: running on worker {self._worker}"))
            outcome = await self._run_leased(message, claim, log, lease)
            if outcome is not None:
                if outcome.error:  # a traceback may quote a secret the task fetched
                    outcome = dataclasses.replace(outcome, error=log.masker.mask(outcome.error))
                if outcome.result is not None:  # viewers read XComs: mask secrets there too
                    masked = mask_result(outcome.result, log.masker.mask)
                    outcome = dataclasses.replace(outcome, result=masked)
                log.write(_describe(outcome))
        return outcome, log.tail()

    async def _run_leased(
        self, message: TaskMessage, claim: ClaimAccepted, log: AttemptLog, lease: Lease
    ) -> Outcome | None:
        with use_resources(AttemptResources(self._client, message, log)):
            running = asyncio.create_task(self._runner.run(claim, log))  # copies the context
        lease.running = running  # a refused heartbeat cancels it
        try:
            return await running
        except asyncio.CancelledError:
            if lease.is_fenced and not _is_being_cancelled():
                return None
            await self._report_interrupted(message)
            raise
        except Exception as exc:  # a runner bug: report it rather than let the lease lapse
            logger.exception("%s: the runner failed", attempt_label(message))
            return Outcome.from_exception(exc)

    async def _report_interrupted(self, message: TaskMessage) -> None:
        """The worker abandons the attempt (its grace period ended): say so at once, so that it
        runs again elsewhere now rather than when its lease lapses."""
        label = attempt_label(message)
        body = FinishRequest(
            attempt=message.attempt,
            state="interrupted",
            error=f"Worker {self._worker} stopped before the attempt finished.",
        )
        try:
            async with asyncio.timeout(INTERRUPTED_REPORT_TIMEOUT):
                await self._client.finish(message.task_instance_id, message.token, body)
        except Exception as exc:
            logger.warning(
                "%s: abandoned before it finished; could not report it (%s), so it runs again "
                "when its lease lapses",
                label,
                exc,
            )
        else:
            logger.warning("%s: abandoned before it finished; it runs again elsewhere", label)

    async def _report(
        self, message: TaskMessage, claim: ClaimAccepted, outcome: Outcome, log: str | None
    ) -> None:
        label = attempt_label(message)
        body = FinishRequest(
            attempt=message.attempt,
            state=outcome.state,
            result=outcome.result,
            error=outcome.error,
            log=log,
        )
        try:
            try:
                accepted = await self._client.finish(message.task_instance_id, message.token, body)
            except BodyTooLarge as exc:  # report the failure rather than retry a lost cause
                outcome = Outcome.failed(_TOO_LARGE.format(reason=exc))
                update = {"state": "failed", "result": None, "error": outcome.error}
                body = body.model_copy(update=update)
                accepted = await self._client.finish(message.task_instance_id, message.token, body)
        except AttemptRefused as exc:
            logger.info("%s: %s report refused (%s)", label, outcome.state, exc)
        except Exception as exc:
            logger.error(
                "%s: could not report %s (%s); the lease will lapse and the service will retry "
                "the task",
                label,
                outcome.state,
                exc,
            )
        else:
            logger.info("%s: %s (task instance now %s)", label, outcome.state, accepted.state)
            await run_task_callback(self._runner.load_task, claim, accepted.state, outcome.error)

    async def _release(self, message: TaskMessage) -> None:
        label = attempt_label(message)
        try:
            await self._client.release(
                message.task_instance_id, message.token, ReleaseRequest(attempt=message.attempt)
            )
        except AttemptRefused as exc:
            logger.info("%s: release refused (%s)", label, exc)
        except Exception as exc:
            logger.warning(
                "%s: could not hand the attempt back (%s); its lease will lapse", label, exc
            )
        else:
            logger.info("%s: stopping, handed the claimed attempt back before starting it", label)


class AttemptResources:
    """The running attempt's connections and variables, over the execution API; every secret is
    added to the attempt's log masker before the task gets it (``weir.resources`` calls this)."""

    def __init__(self, client: ExecutionClient, message: TaskMessage, log: AttemptLog) -> None:
        self._client, self._message, self._log = client, message, log
        self._loop = asyncio.get_running_loop()

    async def afetch(self, kind: ResourceKind, name: str) -> Connection | VariableValue | None:
        message = self._message
        found = await self._client.fetch(
            message.task_instance_id, message.token, message.attempt, kind, name
        )
        if isinstance(found, Connection):
            self._log.masker.add(found.secret_values())
        elif found is not None and found.is_secret:
            self._log.masker.add([found.value])
        return found

    def fetch(self, kind: ResourceKind, name: str) -> Connection | VariableValue | None:
        """From another thread (a pool child's pipe, ``asyncio.to_thread``): ask the loop."""
        if _on_loop(self._loop):
            raise RuntimeError(
                f"In an async task, use `await weir.resources.aget_{kind}({name!r})`: a blocking "
                "call would stall the worker's event loop, which is what fetches the answer."
            )
        return asyncio.run_coroutine_threadsafe(self.afetch(kind, name), self._loop).result()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _settle(
    operation: Callable[[], Awaitable[None]], what: str, message: TaskMessage
) -> None:
    """Ack, nack or dead-letter; a broker failure here is logged, the fences cover the rest."""
    try:
        await operation()
    except Exception as exc:
        label = attempt_label(message)
        logger.warning("%s: %s failed (%s); the broker may deliver it again", label, what, exc)


def _describe(outcome: Outcome) -> str:
    if outcome.state == "success":
        returned = _result_repr.repr(outcome.result)
        return log_line(logging.INFO, f"Task succeeded; returned {returned}")
    if outcome.state == "reschedule":
        return log_line(logging.INFO, "Sensor not done yet; its slot is free until the next poke")
    return log_line(logging.ERROR, f"Task failed:\n{(outcome.error or '').rstrip()}")


def _is_being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
