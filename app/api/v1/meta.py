"""``/api/v1/version``: which Weir answers. Public, like the health probes, so a client can tell
which API it talks to before it has a token."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.problems import PROBLEM_RESPONSES

__all__ = ["VersionPublic", "router"]

router = APIRouter(prefix="/api/v1", tags=["meta"], responses=PROBLEM_RESPONSES)


class VersionPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"version": "0.1.0", "git_commit": None}]}
    )

    version: str = Field(description="The Weir release this server runs.")
    git_commit: str | None = Field(
        default=None, description="The commit it was built from, when the build recorded it."
    )


@router.get("/version", operation_id="version-get")
async def read_version() -> VersionPublic:
    """The version of this server (no token needed)."""
    from weir import __version__

    return VersionPublic(version=__version__)
