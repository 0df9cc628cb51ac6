"""Optional cProfile (``--profile``): where the CPU goes in each Weir process of a setup
(``weir api``, ``weir worker``, ``weir standalone``), each run under ``python -m cProfile``.

cProfile slows Python code down several times over, so profiled numbers are flagged as such.
"""

from __future__ import annotations

import pstats
import sysconfig
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hotspot", "Profiler", "hotspots", "time_by_package"]

_SITE = sysconfig.get_paths()["purelib"]
_STDLIB = sysconfig.get_paths()["stdlib"]
_REPO = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Hotspot:
    function: str
    calls: int
    self_s: float
    cumulative_s: float


_ROLES = ("api", "worker", "standalone")


class Profiler:
    """Makes each process write ``<setup>-<role>.prof`` into ``directory`` when enabled (the
    profile is written when the process exits after SIGTERM)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def prefixes(self, setup: str) -> dict[str, tuple[str, ...]]:
        """Per role, the Python arguments that run ``-m weir`` under cProfile (none when off)."""
        if self.directory is None:
            return {}
        self.directory.mkdir(parents=True, exist_ok=True)
        return {
            role: ("-m", "cProfile", "-o", str(self.directory / f"{setup}-{role}.prof"))
            for role in _ROLES
        }


def _where(filename: str) -> str:
    """The package a profiled function belongs to."""
    if filename.startswith(_SITE):
        return filename[len(_SITE) :].strip("/").split("/")[0].removesuffix(".py")
    if filename.startswith(_REPO):
        return filename[len(_REPO) :].strip("/").split("/")[0].removesuffix(".py")
    if filename.startswith(_STDLIB):
        return "stdlib/" + filename[len(_STDLIB) :].strip("/").split("/")[0].removesuffix(".py")
    return "built-in" if filename == "~" else filename


def _label(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name
    for root in (_SITE, _REPO, _STDLIB):
        if filename.startswith(root):
            filename = filename[len(root) :].strip("/")
            break
    return f"{filename}:{line}({name})"


def hotspots(path: Path, limit: int = 15) -> list[Hotspot]:
    """The functions with the most time spent in their own code."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:limit]
    return [
        Hotspot(_label(*key), calls, own, cumulative)
        for key, (_, calls, own, cumulative, _) in rows
    ]


def time_by_package(path: Path, limit: int = 12) -> list[tuple[str, float]]:
    """Self time summed per package (``sqlalchemy``, ``stdlib/asyncio``, ``app``, …)."""
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, _) in pstats.Stats(str(path)).stats.items():  # type: ignore[attr-defined]
        totals[_where(filename)] += own
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:limit]
