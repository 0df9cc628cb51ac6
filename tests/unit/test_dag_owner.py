"""The ``owner`` DAG option: checked when the file is imported, serialized only when set."""

from __future__ import annotations

from typing import Any

import pytest

from weir import dag, task
from weir.errors import DagDefinitionError


def _build(**options: Any) -> dict[str, Any]:
    @dag(**options)
    def owned() -> None:
        @task
        def only() -> None: ...

        only()

    serialized: dict[str, Any] = owned().to_dict()
    return serialized


def test_an_owner_is_serialized_and_no_owner_adds_no_key() -> None:
    assert _build(owner="data-team")["owner"] == "data-team"
    assert "owner" not in _build(), "existing DAGs keep their version hash"


@pytest.mark.parametrize("owner", ["", "x" * 101, "tab\there", 42])
def test_a_bad_owner_is_an_import_error_that_says_what_fits(owner: Any) -> None:
    with pytest.raises(DagDefinitionError, match="owner must be a name of 1 to 100 printable"):
        _build(owner=owner)
