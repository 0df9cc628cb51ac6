"""The dependency direction of DESIGN.md: ``app`` and ``workers`` never import each other, and
only the composition root imports either from ``weir``: ``weir/cli.py`` and the one command
group that works on the database directly, ``weir/cli_secrets.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


COMPOSITION_ROOT = {ROOT / "weir" / "cli.py", ROOT / "weir" / "cli_secrets.py"}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("app", "workers"), ("workers", "app"), ("weir", "app"), ("weir", "workers")],
)
def test_package_does_not_import(package: str, forbidden: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / package).rglob("*.py"))
        if forbidden in _imported_packages(path) and path not in COMPOSITION_ROOT
    ]
    assert offenders == []


def test_importing_weir_stays_light() -> None:
    """A DAG file's ``import weir`` must not pull in the web, database or broker stacks."""
    import subprocess
    import sys

    code = (
        "import sys, weir; heavy = {'sqlalchemy', 'fastapi', 'aio_pika', 'httpx', 'asyncpg'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
