"""Field types shared by the REST models, so hostile input stops at validation (a 422).

PostgreSQL refuses NUL characters in text: a value containing one must never reach it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["NO_NUL", "Description", "Name"]

NO_NUL = r"^[^\x00]*$"
"""A pattern admitting any text without a NUL character."""

Description = Annotated[str, Field(max_length=5000, pattern=NO_NUL)]
"""Free text written by people."""

Name = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")]
"""An identifier chosen by people: letters, digits, ``_``, ``.`` and ``-``."""
