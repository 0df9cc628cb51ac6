"""The execution API as the worker sees it: one method per call, each fenced on the attempt.

Errors::

    WeirError
    └── ExecutionApiError      the API could not be reached or answered something unexpected
        ├── AttemptRefused     409/401/404: this attempt is not ours to run or report any more
        └── BodyTooLarge       413: the body is over the service's limit (a huge return value)

Claims, reports and log text go through a ``Coalescer`` (``workers.batching``): what is ready
together travels in one ``POST /execution/v1/batch``, with a few batches in flight at once over
the client's keep-alive connections; each item is still answered on its own and raises as its
one-item call would. Transient failures (connection errors, timeouts, 5xx, 429) are retried with
jittered exponential backoff for a bounded time per call (``RetryBudget``), then raised as
``ExecutionApiError``. A retried call may have reached the service the first time: the fence
turns such a duplicate into a 409, so a worker treats ``AttemptRefused`` after a retry the same
way as any other refusal.

``WEIR_API_URL`` may name several replicas, separated by commas: a call that cannot reach one
(a connection error or timeout) is retried on the next, and the worker stays with the replica that
answered. Any replica serves any attempt: they share the database and the token key.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from weir.errors import WeirError
from weir.messages import (
    ClaimAccepted,
    ClaimItem,
    ClaimRequest,
    FinishAccepted,
    FinishItem,
    FinishRequest,
    HeartbeatAccepted,
    HeartbeatBatch,
    HeartbeatBatchAccepted,
    HeartbeatRequest,
    ItemAnswer,
    LogAppend,
    LogItem,
    ReleaseRequest,
)
from weir.resources import Connection, ResourceKind, VariableValue
from workers.batching import BatchError, BatchTooLarge, Coalescer, Item, TransientBatchError

__all__ = ["AttemptRefused", "BodyTooLarge", "ExecutionApiError", "ExecutionClient", "RetryBudget"]

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)

_REFUSALS = frozenset({401, 404, 409})
_CONNECTION = TypeAdapter(Connection)
_VARIABLE = TypeAdapter(VariableValue)


class ExecutionApiError(WeirError):
    """The execution API could not be reached in time, or answered something unexpected."""


class AttemptRefused(ExecutionApiError):
    """The service refused a call for this attempt: it is no longer current (409), the token does
    not authorise it (401) or the task instance is gone (404). Nothing was changed."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class BodyTooLarge(ExecutionApiError):
    """The service refused the body as too large (413): no retry can change that."""


class _TransientError(Exception):
    """An answer worth retrying (5xx, 429)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code} {response.reason_phrase}")


@dataclasses.dataclass(frozen=True, slots=True)
class RetryBudget:
    """How long (seconds) each call keeps retrying transient failures before giving up.

    ``finish`` gets the most: a lost report means the lease lapses and the task runs again.
    ``heartbeat`` stays well under the lease, so the next beat gets its turn.
    """

    claim: float = 30.0
    heartbeat: float = 10.0
    logs: float = 30.0
    finish: float = 60.0
    release: float = 10.0
    fetch: float = 30.0
    first_wait: float = 0.2
    max_wait: float = 5.0


class ExecutionClient:
    """Calls ``{api_url}/execution/v1/task-instances/{id}/…`` with the attempt's bearer token."""

    def __init__(
        self,
        api_url: str,
        http: httpx.AsyncClient | None = None,
        *,
        budget: RetryBudget | None = None,
        coalesce: bool = True,
    ) -> None:
        """``coalesce=False`` sends claims, reports and log text one call each (the one-item
        endpoints, which the service keeps for workers of an older release)."""
        self._api_urls = [url.strip().rstrip("/") for url in api_url.split(",") if url.strip()]
        if not self._api_urls:
            raise ValueError("WEIR_API_URL is empty: give the URL of at least one `weir api`.")
        self._current = 0
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self._budget = budget or RetryBudget()
        self._coalescer: Coalescer | None = None
        if coalesce:
            self._coalescer = Coalescer(
                self._post_batch,
                first_wait=self._budget.first_wait,
                max_wait=self._budget.max_wait,
                describe=lambda: ", ".join(self._api_urls),
            )

    @property
    def batches_sent(self) -> int:
        """Batch requests sent so far (0 when not coalescing)."""
        return self._coalescer.batches if self._coalescer is not None else 0

    async def aclose(self) -> None:
        """Stop the batch sender; close the HTTP client if this object created it."""
        if self._coalescer is not None:
            await self._coalescer.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> ExecutionClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def claim(self, task_instance_id: int, token: str, body: ClaimRequest) -> ClaimAccepted:
        if self._coalescer is None:
            response = await self._post(task_instance_id, "claim", token, body, self._budget.claim)
            return _parse(ClaimAccepted, response)
        item = ClaimItem.model_construct(
            task_instance_id=task_instance_id, token=token, **dict(body)
        )
        answer = await self._batched(item, self._budget.claim)
        if answer.claim is None:
            raise ExecutionApiError(f"the batch answered claim of {task_instance_id} without it")
        return answer.claim

    async def heartbeat(
        self, task_instance_id: int, token: str, body: HeartbeatRequest
    ) -> HeartbeatAccepted:
        response = await self._post(
            task_instance_id, "heartbeat", token, body, self._budget.heartbeat
        )
        return _parse(HeartbeatAccepted, response)

    async def heartbeats(self, body: HeartbeatBatch) -> HeartbeatBatchAccepted:
        """Renew the leases of every attempt the worker runs; each beat carries its token.
        One try only: the next beat, an interval later, is the retry (a backoff between tries
        could outlast a short lease just after the service recovered)."""
        call = _Call("POST", "/execution/v1/heartbeats", json=body.model_dump(mode="json"))
        response = await self._send(call, None, budget=0.0)
        return _parse(HeartbeatBatchAccepted, response)

    async def append_log(self, task_instance_id: int, token: str, body: LogAppend) -> None:
        if self._coalescer is None:
            await self._post(task_instance_id, "logs", token, body, self._budget.logs)
            return
        item = LogItem.model_construct(task_instance_id=task_instance_id, token=token, **dict(body))
        await self._batched(item, self._budget.logs)

    async def finish(
        self, task_instance_id: int, token: str, body: FinishRequest
    ) -> FinishAccepted:
        if self._coalescer is None:
            response = await self._post(
                task_instance_id, "finish", token, body, self._budget.finish
            )
            return _parse(FinishAccepted, response)
        item = FinishItem.model_construct(
            task_instance_id=task_instance_id, token=token, **dict(body)
        )
        answer = await self._batched(item, self._budget.finish)
        if answer.finish is None:
            raise ExecutionApiError(f"the batch answered finish of {task_instance_id} without it")
        return answer.finish

    async def _batched(self, item: Item, budget: float) -> ItemAnswer:
        """One item through the coalescer, with the errors its one-item call would raise."""
        assert self._coalescer is not None
        what = f"{item.kind} of task instance {item.task_instance_id} (attempt {item.attempt})"
        try:
            answer = await self._coalescer.call(item, budget)
        except TransientBatchError as exc:
            raise ExecutionApiError(
                f"{what} kept failing for {budget:g} s ({exc}); is the API at "
                f"{', '.join(self._api_urls)} up, and is WEIR_API_URL right?"
            ) from exc
        except BatchTooLarge as exc:
            raise BodyTooLarge(f"{what}: {exc}") from exc
        except BatchError as exc:
            raise ExecutionApiError(f"{what}: {exc}") from exc
        if answer.status in _REFUSALS:
            raise AttemptRefused(answer.status, answer.detail or "refused")
        if answer.status != 200:
            raise ExecutionApiError(f"{what} answered {answer.status}: {answer.detail}")
        return answer

    async def _post_batch(self, body: bytes) -> httpx.Response:
        """One try of a batch at the replica in use; a connection failure moves to the next."""
        current = self._current
        request = self._http.build_request(
            "POST",
            self._api_urls[current] + "/execution/v1/batch",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            return await self._http.send(request)
        except httpx.TransportError as exc:
            self._fail_over(current)
            raise TransientBatchError(repr(exc)) from exc

    async def release(self, task_instance_id: int, token: str, body: ReleaseRequest) -> None:
        await self._post(task_instance_id, "release", token, body, self._budget.release)

    async def fetch(
        self, task_instance_id: int, token: str, attempt: int, kind: ResourceKind, name: str
    ) -> Connection | VariableValue | None:
        """A connection or variable for the running attempt's task; None if it does not exist."""
        call = _Call(
            "GET",
            f"{_TASK_INSTANCES}/{task_instance_id}/{kind}s/{quote(name, safe='')}",
            params={"attempt": attempt},
            token=token,
        )
        try:
            response = await self._send(call, attempt, self._budget.fetch)
        except AttemptRefused as exc:
            if exc.status_code == 404:  # the attempt is checked first: 404 is the resource
                return None
            raise
        try:
            if kind == "connection":
                return _CONNECTION.validate_json(response.content)
            return _VARIABLE.validate_json(response.content)
        except ValueError as exc:
            raise ExecutionApiError(
                f"GET {call.path} answered a body that is not a {kind}: {exc}"
            ) from exc

    async def _post(
        self, task_instance_id: int, call: str, token: str, body: BaseModel, budget: float
    ) -> httpx.Response:
        """POST with retries of transient failures; the answer is a 2xx or an exception."""
        path = f"{_TASK_INSTANCES}/{task_instance_id}/{call}"
        post = _Call("POST", path, json=body.model_dump(mode="json"), token=token)
        return await self._send(post, getattr(body, "attempt", None), budget)

    async def _send(self, call: _Call, attempt: int | None, budget: float) -> httpx.Response:
        """Send with retries of transient failures; the answer is a 2xx or an exception."""
        url = f"{call.method} {call.path}"
        retrying = AsyncRetrying(
            stop=stop_after_delay(budget),
            wait=wait_exponential_jitter(
                multiplier=self._budget.first_wait,
                jitter=self._budget.first_wait,
                max=self._budget.max_wait,
            ),
            retry=retry_if_exception(_is_transient),
            before_sleep=_retry_logger(url, attempt),
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    return await self._send_once(call, url)
        except (httpx.TransportError, _TransientError) as exc:
            raise ExecutionApiError(
                f"{url} kept failing for {budget:g} s ({exc!r}); is the API at "
                f"{', '.join(self._api_urls)} up, and is WEIR_API_URL right?"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _send_once(self, call: _Call, url: str) -> httpx.Response:
        """One try, at the replica in use now; a connection failure moves on to the next."""
        current = self._current
        request = call.build(self._http, self._api_urls[current])
        try:
            response = await self._http.send(request)
        except httpx.TransportError:
            self._fail_over(current)
            raise
        if response.is_success:
            return response
        if response.status_code in _REFUSALS:
            raise AttemptRefused(response.status_code, _problem_detail(response))
        if response.status_code == 413:
            raise BodyTooLarge(f"{url} answered 413: {_problem_detail(response)}")
        if response.status_code == 429 or response.is_server_error:
            raise _TransientError(response)
        raise ExecutionApiError(
            f"{url} answered {response.status_code}: {_problem_detail(response)}"
        )

    def _fail_over(self, failed: int) -> None:
        """Move to the next replica (unless a concurrent call already moved on)."""
        if len(self._api_urls) > 1 and self._current == failed:
            self._current = (failed + 1) % len(self._api_urls)
            logger.warning(
                "API at %s unreachable; trying %s",
                self._api_urls[failed],
                self._api_urls[self._current],
            )


_TASK_INSTANCES = "/execution/v1/task-instances"


@dataclasses.dataclass(frozen=True, slots=True)
class _Call:
    """One execution-API call, built anew for each try (the replica may change between tries)."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    token: str | None = None

    def build(self, http: httpx.AsyncClient, api_url: str) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        return http.build_request(
            self.method, api_url + self.path, json=self.json, params=self.params, headers=headers
        )


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | _TransientError)


def _retry_logger(url: str, attempt: int | None) -> Callable[[RetryCallState], None]:
    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s (attempt %s) failed (%r); retry %d in %.1f s",
            url,
            attempt,
            exc,
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
        )

    return log_retry


def _problem_detail(response: httpx.Response) -> str:
    """The ``detail`` of a problem+json body, else the body text (shortened)."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:500]


def _parse(model: type[Model], response: httpx.Response) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValueError as exc:
        raise ExecutionApiError(
            f"{response.request.url} answered a body that is not a {model.__name__}: {exc}"
        ) from exc
