"""Shared fixtures: ``stack`` runs a whole Weir on each backend (see tests/support/stack.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.stack import BACKENDS, Stack, start_stack


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        request.applymarker(pytest.mark.postgres)
    return name


@pytest.fixture
async def stack(backend: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(backend, tmp_path) as running:
        yield running
