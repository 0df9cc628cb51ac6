"""One way to page and sort every list of the REST API.

``?limit=&offset=`` pick the page and ``?order_by=`` a sort key from the list's own allow-list
(``-`` in front for descending); every answer carries the ``total`` matching the filters. The
primary key breaks ties, so a page boundary never hides or repeats a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from weir.errors import InvalidRequest

__all__ = ["Limit", "Offset", "OrderBy", "Page", "paginate"]

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page (at most 1000).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]
OrderBy = Annotated[
    str | None,
    Query(
        max_length=100,
        description="A sort key of this list; prefix it with '-' for descending order.",
    ),
]


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = 100
    offset: int = 0
    order_by: str | None = None


async def paginate(
    session: AsyncSession,
    statement: Select[T],
    page: Page,
    *,
    sort_keys: Mapping[str, InstrumentedAttribute[Any]],
    default: str,
    tiebreak: InstrumentedAttribute[Any],
) -> tuple[Sequence[T], int]:
    """The rows of one page of ``statement`` (a one-entity select) and the total count.

    An unknown sort key is a 422 naming the keys there are.
    """
    key = page.order_by or default
    descending = key.startswith("-")
    column = sort_keys.get(key.removeprefix("-"))
    if column is None:
        raise InvalidRequest(
            f"Cannot sort by {key!r}; use one of {', '.join(sorted(sort_keys))} "
            "(with '-' in front for descending).",
            errors=[{"field": "query.order_by", "message": f"unknown sort key {key!r}"}],
        )
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    ordering = (column.desc(), tiebreak.desc()) if descending else (column.asc(), tiebreak.asc())
    rows = (
        await session.scalars(statement.order_by(*ordering).limit(page.limit).offset(page.offset))
    ).all()
    return rows, total or 0
