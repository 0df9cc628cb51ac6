"""``python -m app.api.openapi_export [--check]``: keep ``docs/openapi.json`` equal to the API.

The committed document lets reviewers see every API change in a diff and lets client generators
run without a server. It is computed from an app built on a throw-away configuration: building the
schema runs no lifespan, so no database, broker or migration is touched.
``--check`` (for CI) writes nothing and exits 1 when the committed file is stale.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_OUTPUT", "REGENERATE_COMMAND", "main", "render", "served_document"]

DEFAULT_OUTPUT = Path("docs/openapi.json")
REGENERATE_COMMAND = "make openapi"


def served_document() -> dict[str, Any]:
    """The OpenAPI document ``GET /openapi.json`` answers, without starting anything."""
    from app.db.engine import create_database
    from app.main import create_app
    from weir.broker.memory import MemoryBroker
    from weir.config import Settings

    settings = Settings(
        _env_file=None,
        database_url="sqlite+aiosqlite:///:memory:",
        broker_url="memory://",
        secret_key=secrets.token_urlsafe(32),
    )
    # create_database only builds an engine; it connects on first use, which never comes here.
    database = create_database(settings.database_url)
    app = create_app(settings, database, MemoryBroker(), run_service_loops=False)
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    """The stable text form: sorted keys, 2-space indent, a trailing newline (clean diffs)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.api.openapi_export",
        description="Write the OpenAPI document the Weir API serves to a file.",
    )
    parser.add_argument("--check", action="store_true", help="Compare only; exit 1 if stale.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="%(default)s")
    options = parser.parse_args(argv)
    text = render(served_document())
    path: Path = options.output
    if options.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(
                f"{path} is not what the API serves; regenerate it with `{REGENERATE_COMMAND}` "
                "and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"{path} is up to date.")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"Wrote {path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
