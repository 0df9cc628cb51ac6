"""CPU time and memory of Weir's processes, read from ``/proc`` (Linux only).

What is counted as one process's CPU is its *tree*: the process itself (all its threads, living and
gone) plus every descendant, living (their own ``utime + stime``) or already reaped by its parent
(the kernel adds a reaped child's time, and its reaped descendants', to the parent's ``cutime +
cstime``). So the worker's count includes its fork server and the sync-task children it forked,
and the API's includes the DAG processor's parse children. A descendant whose parent died before
reaping it is re-parented outside the tree and its time is lost; Weir's processes reap their
children, so in practice nothing is. The clock ticks are 10 ms (``SC_CLK_TCK`` = 100), so a
window shorter than a second is coarse.

Memory is the resident set (``VmRSS``) of one process, not of its tree. Its descendants (the
worker's fork server and sync-task processes, which share most of their pages with each other)
are summed as proportional set sizes (``Pss``: each shared page divided among its sharers), which
a sum of their resident sets would count several times over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MemoryPeaks",
    "descendants",
    "pss_mb",
    "rss_mb",
    "tree_cpu_seconds",
    "watch_memory",
]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (None if the process is gone).

    The name is in parentheses and may itself contain spaces and parentheses, hence the split at
    the last ``)``; field 3 of the man page (state) is index 0 here."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    """Every living process's parent, read from ``/proc/*/stat``."""
    found: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                found[int(entry.name)] = int(fields[1])
    return found


def _children() -> dict[int, list[int]]:
    """Every living process's children (one pass over ``/proc``)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """The living descendants of ``pid`` (children, grandchildren, …); ``children`` is a
    ``_children()`` already read, to read ``/proc`` once for several processes."""
    children = _children() if children is None else children
    found: list[int] = []
    pending = list(children.get(pid, ()))
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, ()))
    return found


def _own_and_reaped_seconds(pid: int) -> float:
    """``utime + stime + cutime + cstime`` of one process, in seconds (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # man proc_pid_stat: utime, stime, cutime, cstime are fields 14-17, indexes 11-14 here.
    return sum(int(value) for value in fields[11:15]) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and all its descendants (see the module docstring)."""
    return sum(_own_and_reaped_seconds(p) for p in [pid, *descendants(pid)])


def _status_kb(pid: int, key: str, file: str = "status") -> int | None:
    """A ``key: N kB`` line of ``/proc/<pid>/<file>``."""
    try:
        lines = (_PROC / str(pid) / file).read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def rss_mb(pid: int) -> float | None:
    """The resident set of ``pid`` now, in MiB (None if it is gone)."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def pss_mb(pid: int) -> float | None:
    """The proportional set size of ``pid`` now, in MiB (None if it is gone)."""
    kb = _status_kb(pid, "Pss", "smaps_rollup")
    return None if kb is None else kb / 1024


def _reset_peak(pid: int) -> bool:
    """Restart ``VmHWM`` (the kernel's peak RSS) from the current RSS (``clear_refs`` 5)."""
    try:
        (_PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024


@dataclass
class MemoryPeaks:
    """The peak RSS of each watched process (MiB) over a window, and the peak of its
    descendants' summed PSS."""

    process_mb: dict[str, float] = field(default_factory=dict)
    children_mb: dict[str, float] = field(default_factory=dict)
    exact: dict[str, bool] = field(default_factory=dict)
    """Per role: True when the peak is the kernel's ``VmHWM`` reset at the window's start, False
    when only the samples (every ``interval``) saw it."""

    def sample(self, pids: Mapping[str, int]) -> None:
        tree = _children()
        for role, pid in pids.items():
            now = rss_mb(pid)
            if now is not None:
                self.process_mb[role] = max(self.process_mb.get(role, 0.0), now)
            children = [pss_mb(child) for child in descendants(pid, tree)]
            total = sum(mb for mb in children if mb is not None)
            self.children_mb[role] = max(self.children_mb.get(role, 0.0), total)


@contextlib.asynccontextmanager
async def watch_memory(
    pids: Mapping[str, int], interval: float = 1.0
) -> AsyncIterator[MemoryPeaks]:
    """Sample the RSS of ``pids`` (role → pid) until the block ends; the peaks are complete when
    it has ended. The kernel's own peak is reset first where allowed, so a spike between two
    samples is still seen (each sample reads all of ``/proc``: the bench shares the machine
    with what it measures, so it samples sparingly)."""
    peaks = MemoryPeaks(exact={role: _reset_peak(pid) for role, pid in pids.items()})

    async def sample_forever() -> None:
        while True:
            await asyncio.to_thread(peaks.sample, pids)
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample_forever())
    try:
        yield peaks
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        peaks.sample(pids)
        for role, pid in pids.items():
            peak = _peak_mb(pid)
            if peaks.exact.get(role) and peak is not None:
                peaks.process_mb[role] = max(peaks.process_mb.get(role, 0.0), peak)
