"""An attempt's log in byte ranges a client can tail (``GET …/tasks/{task_id}/logs``).

Offsets count bytes of the log's UTF-8 text, so ``next_offset`` can be passed straight back as
``offset`` to get what came since. A range never splits a character: an offset inside one moves
back to its first byte, and a page that would end inside one ends before it.

JSON (``LogSlice``) by default; ``?format=text`` or ``Accept: text/plain`` gives the text alone,
with the range in the ``X-Weir-Log-Offset``, ``X-Weir-Log-Next-Offset`` and
``X-Weir-Log-Complete`` headers.
"""

from __future__ import annotations

from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AttemptLog, TaskInstance
from weir.errors import NotFound
from weir.states import TaskState

__all__ = ["DEFAULT_BYTES", "LogSlice", "as_text", "is_log_complete", "read_log", "utf8_window",
           "wants_text"]  # fmt: skip

DEFAULT_BYTES = 1 << 20
_LIVE = frozenset({TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING})


class LogSlice(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "content": "extracted 3 rows\n",
                    "offset": 0,
                    "next_offset": 17,
                    "attempt": 1,
                    "complete": True,
                }
            ]
        }
    )

    content: str = Field(description="The log text from ``offset`` to ``next_offset``.")
    offset: int = Field(description="Where the content starts, in bytes of UTF-8.")
    next_offset: int = Field(description="Pass it as ``offset`` to read what follows.")
    attempt: int
    complete: bool = Field(description="The attempt has ended: nothing will be added.")


def utf8_window(data: bytes, offset: int, max_bytes: int) -> tuple[int, int]:
    """``(start, end)`` of at most ``max_bytes`` from ``offset``, on character boundaries (a
    page always moves on by at least one character, even if that is longer than ``max_bytes``)."""
    start = min(offset, len(data))
    while 0 < start < len(data) and _is_continuation(data[start]):
        start -= 1
    end = min(start + max_bytes, len(data))
    while start < end < len(data) and _is_continuation(data[end]):
        end -= 1
    if end == start and start < len(data):
        end = start + 1
        while end < len(data) and _is_continuation(data[end]):
            end += 1
    return start, end


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def is_log_complete(ti: TaskInstance, attempt: int) -> bool:
    """Whether ``attempt``'s log can still grow: only the current attempt's, while it waits to
    run or runs (the worker's last text arrives with its finish, in the same transaction)."""
    if attempt < ti.attempt:
        return True
    state = TaskState(ti.state)
    return not (state in _LIVE or (state is TaskState.NONE and ti.attempt == 0))


async def _log_bytes(session: AsyncSession, ti_id: int, attempt: int) -> bytes:
    """The whole text of the attempt's log. Chunks have no stored byte length, so a range is cut
    from the whole; a length column would let a tail read only its own chunks."""
    chunks = await session.scalars(
        select(AttemptLog.data)
        .where(AttemptLog.task_instance_id == ti_id, AttemptLog.attempt == attempt)
        .order_by(AttemptLog.id)
    )
    return "".join(chunks).encode()


def wants_text(format_: str | None, accept: str | None) -> bool:
    if format_ is not None:
        return format_ == "text"
    accepted = (accept or "").lower()
    return "text/plain" in accepted and "application/json" not in accepted


async def read_log(
    session: AsyncSession, ti: TaskInstance, attempt: int | None, offset: int, max_bytes: int
) -> LogSlice:
    """The slice of ``attempt``'s log (the current attempt's by default) from ``offset``."""
    wanted = ti.attempt if attempt is None else attempt
    if wanted > ti.attempt:
        raise NotFound(f"Task {ti.task_id!r} has no attempt {wanted} yet; it is at {ti.attempt}.")
    data = await _log_bytes(session, ti.id, wanted)
    start, end = utf8_window(data, offset, max_bytes)
    return LogSlice(
        content=data[start:end].decode(), offset=start, next_offset=end, attempt=wanted,
        complete=is_log_complete(ti, wanted) and end == len(data),
    )  # fmt: skip


def as_text(piece: LogSlice) -> PlainTextResponse:
    """The slice as plain text, its range in headers."""
    headers = {"X-Weir-Log-Offset": str(piece.offset),
               "X-Weir-Log-Next-Offset": str(piece.next_offset),
               "X-Weir-Log-Complete": str(piece.complete).lower()}  # fmt: skip
    return PlainTextResponse(piece.content, headers=headers)
