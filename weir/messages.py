"""Wire models shared by the service and the workers: the broker's task message and the bodies of
the execution API (``/execution/v1``).

Every message and every call carries ``(task_instance_id, attempt)``: the fence that lets the
service refuse a report from an attempt that is no longer current (invariant 1).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator

__all__ = [
    "MESSAGE_VERSION",
    "ClaimAccepted",
    "ClaimItem",
    "ClaimRequest",
    "DagCallbackMessage",
    "ExecutionBatch",
    "ExecutionBatchAnswer",
    "FinishAccepted",
    "FinishItem",
    "FinishRequest",
    "HeartbeatAccepted",
    "HeartbeatBatch",
    "HeartbeatBatchAccepted",
    "HeartbeatBeat",
    "HeartbeatRequest",
    "ItemAnswer",
    "LogAppend",
    "LogItem",
    "ReleaseRequest",
    "TaskKind",
    "TaskMessage",
    "WorkerMessage",
    "parse_worker_message",
]

MESSAGE_VERSION: Literal[1] = 1


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NUL_REPLACEMENT = "\ufffd"
"""What a NUL character in a task's output, traceback or return value becomes on the wire.

PostgreSQL's text and JSONB cannot hold NUL; SQLite can. Replacing it here, where the worker's
report is built and the service reads it, makes both backends store the same characters, so a task
that prints or returns NUL succeeds with its whole log kept (U+FFFD is Unicode's own mark for a
character that could not be represented)."""


def _without_nul(value: Any) -> Any:
    """``value`` (text, or JSON data) with every NUL, in strings and keys alike, replaced."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


class TaskMessage(_Wire):
    """What the outbox relay publishes and a worker consumes: a wake-up for one attempt.

    It carries no work: the worker learns what to run from its claim. ``token`` is the
    attempt-scoped credential for the execution API (invariant 6).
    """

    v: Literal[1] = MESSAGE_VERSION
    task_instance_id: int
    attempt: int = Field(ge=1)
    dag_id: str
    run_id: str
    task_id: str
    queue: str
    token: str


class TaskKind(StrEnum):
    PYTHON = "python"
    SHELL = "shell"


class ClaimRequest(_Wire):
    attempt: int = Field(ge=1)
    worker: str = Field(description="hostname:pid of the claiming worker")


class ClaimAccepted(_Wire):
    """The claim won (``queued -> running``): everything the worker needs to run the attempt."""

    task_instance_id: int
    attempt: int
    dag_id: str
    run_id: str
    task_id: str
    fileloc: str = Field(description="The DAG file, relative to the DAGs folder.")
    file_hash: str
    kind: TaskKind
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Return values of the upstream tasks this one reads."
    )
    conf: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(
        default_factory=dict, description="The DAG's params with the trigger's conf merged in."
    )
    logical_date: datetime
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    map_index: int = -1
    timeout: float | None = Field(default=None, description="Seconds the attempt may run.")
    heartbeat_interval: float
    lease_seconds: float


class HeartbeatRequest(_Wire):
    attempt: int = Field(ge=1)


class HeartbeatAccepted(_Wire):
    lease_expires_at: datetime


class HeartbeatBeat(_Wire):
    """One running attempt in a worker's batched heartbeat, with its own token and fence."""

    task_instance_id: int
    attempt: int = Field(ge=1)
    token: str


class HeartbeatBatch(_Wire):
    """Every attempt a worker runs, renewed in one request (so a short lease stays cheap)."""

    beats: list[HeartbeatBeat] = Field(max_length=10_000)


class HeartbeatBatchAccepted(_Wire):
    """Each beat answered on its own: renewed, or refused (the attempt is no longer current or
    the token does not authorise it), in which case the worker stops that attempt."""

    lease_expires_at: datetime
    renewed: list[int] = Field(description="Task instance ids whose lease was renewed.")
    refused: list[int] = Field(description="Task instance ids the worker must stop.")


class LogAppend(_Wire):
    attempt: int = Field(ge=1)
    data: str = Field(description="Text to append to the attempt's log, newlines included.")

    _no_nul = field_validator("data")(_without_nul)


class FinishRequest(_Wire):
    """How an attempt ended; ``reschedule`` is a sensor's "not yet" (the service pokes again);
    ``interrupted``: the worker stopped it while shutting down (it runs again at once, without
    using one of the task's retries)."""

    attempt: int = Field(ge=1)
    state: Literal["success", "failed", "reschedule", "interrupted"]
    result: Any = None
    error: str | None = Field(default=None, description="The traceback when state is failed.")
    log: str | None = Field(
        default=None, description="The end of the attempt's log, not shipped before the report."
    )

    _no_nul = field_validator("result", "error", "log")(_without_nul)


class FinishAccepted(_Wire):
    state: str = Field(description="The task instance's state after the report.")


class ReleaseRequest(_Wire):
    """A worker shutting down hands back an attempt it claimed but never started."""

    attempt: int = Field(ge=1)


class ClaimItem(ClaimRequest):
    """A claim in a worker's batch (``POST /execution/v1/batch``), with its attempt's token."""

    kind: Literal["claim"] = "claim"
    task_instance_id: int
    token: str


class FinishItem(FinishRequest):
    """A report in a worker's batch, with its attempt's token."""

    kind: Literal["finish"] = "finish"
    task_instance_id: int
    token: str


class LogItem(LogAppend):
    """Log text in a worker's batch, with its attempt's token."""

    kind: Literal["log"] = "log"
    task_instance_id: int
    token: str


BatchItem = Annotated[ClaimItem | FinishItem | LogItem, Field(discriminator="kind")]

MAX_BATCH_ITEMS = 1000


class ExecutionBatch(_Wire):
    """What a worker has ready at one moment (claims, reports, log text), in one request and
    one transaction. Each item carries its own token and fence and is answered on its own."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class ItemAnswer(_Wire):
    """The answer to one item: ``status`` 200 (done; ``claim`` or ``finish`` says more), or
    what the one-item call would have answered: 401 (the token does not authorise the attempt),
    404 (no such task instance), 409 (not the current attempt in the expected state)."""

    status: int
    detail: str | None = None
    claim: ClaimAccepted | None = None
    finish: FinishAccepted | None = None


class ExecutionBatchAnswer(_Wire):
    answers: list[ItemAnswer] = Field(description="One per item, in the order of the items.")


class DagCallbackMessage(_Wire):
    """A DAG's ``on_success``/``on_failure`` to run (``workers.callbacks``): written to the outbox
    in the transaction that ends the run, so it is delivered at least once. It carries the whole
    run context, because no attempt (and so no execution-API token) stands behind it."""

    v: Literal[1] = MESSAGE_VERSION
    kind: Literal["dag_callback"] = "dag_callback"
    callback: Literal["on_success", "on_failure"]
    dag_id: str
    run_id: str
    fileloc: str
    file_hash: str
    logical_date: datetime
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    conf: dict[str, Any]
    params: dict[str, Any]
    error: str | None = Field(default=None, description="For on_failure: the failed tasks.")


def _message_kind(value: Any) -> str | None:
    """A message's tag: task messages carry none (they predate the union, and a worker of an
    older release refuses unknown fields), so a message without ``kind`` is a task's."""
    if isinstance(value, dict):
        kind = value.get("kind", "task")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", "task")  # an instance: only DagCallbackMessage has a kind


WorkerMessage = Annotated[
    Annotated[TaskMessage, Tag("task")] | Annotated[DagCallbackMessage, Tag("dag_callback")],
    Discriminator(_message_kind),
]
"""Whatever a worker's queue delivers, told apart by ``kind`` in one parse."""

_worker_message: TypeAdapter[TaskMessage | DagCallbackMessage] = TypeAdapter(WorkerMessage)


def parse_worker_message(body: bytes) -> TaskMessage | DagCallbackMessage:
    """Parse a message from a worker's queue; raises pydantic's ``ValidationError``."""
    return _worker_message.validate_json(body)
