"""Jinja2 templates from the ``frontend`` package (installed with Weir, so no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

import frontend

__all__ = ["STATIC_DIR", "templates"]

FRONTEND = Path(frontend.__file__).parent
STATIC_DIR = FRONTEND / "static"
templates = Jinja2Templates(directory=FRONTEND / "templates")
