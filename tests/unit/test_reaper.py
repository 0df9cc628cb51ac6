"""The worker's watchdog (``workers.reaper``) against real processes: what a worker started is
killed when the worker's end of the pipe closes, whether or not it was registered yet."""

from __future__ import annotations

import os
import subprocess
import time

from workers.reaper import MARKER, ProcessGroupReaper


def _sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A shell in a session of its own, as a shell task runs, with a child of its own."""
    return subprocess.Popen(
        ["sh", "-c", "sleep 60 & wait"], env={**os.environ, **env}, start_new_session=True
    )


def _gone(process: subprocess.Popen[bytes], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return True
        time.sleep(0.02)
    return False


def _group_alive(pgid: int, timeout: float = 5.0) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie does not: in a container nobody
    may reap a killed orphan, and it would still answer ``killpg(pgid, 0)``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_running_in(entry.name, pgid) for entry in os.scandir("/proc")):
            return False
        time.sleep(0.02)
    return True


def _running_in(pid: str, pgid: int) -> bool:
    if not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[2]) == pgid


def test_a_registered_group_is_killed_when_the_worker_goes() -> None:
    reaper = ProcessGroupReaper()
    process = _sleeper({})
    try:
        reaper.watch(process.pid)
        reaper.close()  # what the kernel does to the pipe when the worker is killed
        assert _gone(process)
        assert not _group_alive(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)


def test_a_group_started_but_not_registered_yet_is_found_by_its_marker() -> None:
    """The moment between starting a shell and registering its group: a worker killed then
    would leave the shell (and what it started) to finish a task that runs again elsewhere."""
    reaper = ProcessGroupReaper()
    marked, unmarked = _sleeper({MARKER: reaper.marker}), _sleeper({MARKER: "another-worker"})
    time.sleep(0.1)  # both shells have started their sleep
    try:
        reaper.close()
        assert _gone(marked)
        assert not _group_alive(marked.pid)
        assert unmarked.poll() is None, "another worker's task process must be left alone"
    finally:
        for process in (marked, unmarked):
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()


def test_a_group_forgotten_is_left_alone() -> None:
    reaper = ProcessGroupReaper()
    process = _sleeper({})
    try:
        reaper.watch(process.pid)
        reaper.forget(process.pid)
        reaper.close()
        time.sleep(0.2)
        assert process.poll() is None
    finally:
        os.killpg(process.pid, 9)
        process.wait()
