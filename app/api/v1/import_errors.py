"""``/api/v1/import-errors``: DAG files that failed to import, with their tracebacks.

A file's import error is named by its path relative to the DAGs folder (slashes included), so the
item route takes the rest of the URL as the path: ``/api/v1/import-errors/team/etl/orders.py``.
Anyone with a token reads them; the DAG processor alone writes them (a good parse clears one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import Session
from app.api.pagination import Limit, Offset, OrderBy, Page, paginate
from app.api.problems import PROBLEM_RESPONSES
from app.auth import Viewer
from app.db.models import ImportError_
from weir.errors import NotFound

__all__ = ["ImportErrorPublic", "ImportErrorsPublic", "router"]

router = APIRouter(
    prefix="/api/v1/import-errors", tags=["import-errors"], responses=PROBLEM_RESPONSES
)

Fileloc = Annotated[
    str,
    Path(min_length=1, max_length=1024, pattern=r"^[^\x00]*$",
         description="The file's path relative to the DAGs folder.", examples=["etl/orders.py"]),
]  # fmt: skip
SORT_KEYS = {"created_at": ImportError_.created_at, "fileloc": ImportError_.fileloc}


class ImportErrorPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {"fileloc": "etl/orders.py", "created_at": "2026-01-01T06:00:00Z",
                 "error": "Traceback (most recent call last): ...\nNameError: name 'x' ..."}
            ]
        },
    )  # fmt: skip

    fileloc: str = Field(description="The file's path relative to the DAGs folder.")
    error: str = Field(description="The traceback or reason the import failed.")
    created_at: datetime


class ImportErrorsPublic(BaseModel):
    import_errors: list[ImportErrorPublic]
    total: int


@router.get("", operation_id="import-errors-list")
async def list_import_errors(
    session: Session,
    _viewer: Viewer,
    limit: Limit = 100,
    offset: Offset = 0,
    order_by: OrderBy = None,
) -> ImportErrorsPublic:
    """The files whose last import failed, newest first; their last good DAGs keep running."""
    rows, total = await paginate(
        session, select(ImportError_), Page(limit, offset, order_by),
        sort_keys=SORT_KEYS, default="-created_at", tiebreak=ImportError_.fileloc,
    )  # fmt: skip
    return ImportErrorsPublic(
        import_errors=[ImportErrorPublic.model_validate(row) for row in rows], total=total
    )


@router.get("/{fileloc:path}", operation_id="import-errors-get")
async def read_import_error(
    fileloc: Fileloc, session: Session, _viewer: Viewer
) -> ImportErrorPublic:
    """The import error of one file (404 once the file imports cleanly)."""
    row = await session.get(ImportError_, fileloc)
    if row is None:
        raise NotFound(f"{fileloc!r} has no import error; GET /api/v1/import-errors lists them.")
    return ImportErrorPublic.model_validate(row)
