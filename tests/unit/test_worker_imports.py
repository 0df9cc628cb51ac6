"""The worker reaches the service only over HTTP: no module of ``workers`` imports ``app``."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import workers

CHECK = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m == "app" or m.startswith("app."))
print(",".join(leaked))
"""


def test_workers_never_import_app() -> None:
    modules = ["workers"] + [
        f"workers.{info.name}" for info in pkgutil.iter_modules(workers.__path__)
    ]

    done = subprocess.run(
        [sys.executable, "-c", CHECK, *modules], capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == ""
