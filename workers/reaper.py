"""The reaper: a worker's task processes never outlive it (invariant 2).

Sync tasks run in child processes and shell tasks in process groups of their own, so that stopping
one attempt can kill everything it started. The price is that a worker killed with SIGKILL leaves
them orphaned: they would finish their side effects while the lapsed attempt runs again elsewhere.

So each worker starts one small watchdog process and tells it, over a pipe, which process groups
it leads right now (``+pgid`` when a group starts, ``-pgid`` when it has ended). A group is
known only once its leader runs, a few turns of the worker's event loop after it was started; a
worker killed in between would leave it behind, so task processes also carry the worker's marker
in their environment (``WEIR_REAPER``), and the watchdog kills the groups of marked processes
too. The watchdog does nothing else until the pipe reaches end of file, which happens however the
worker ends (the kernel closes its end): it then kills every group still registered and exits.
A worker that stops normally has forgotten its groups by then, so the watchdog finds nothing to
kill.

This module is also the watchdog's program: it runs by path with ``python -I -S``, so it imports
only the standard library and starts in milliseconds.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from contextlib import suppress

__all__ = ["MARKER", "ProcessGroupReaper"]

logger = logging.getLogger(__name__)


MARKER = "WEIR_REAPER"
"""The environment variable that marks a task process as this worker's (see ``marker``)."""


class ProcessGroupReaper:
    """The worker's side: starts the watchdog and registers process groups with it (thread-safe:
    sync children start in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._broken = False
        self.marker = f"{os.getpid()}-{secrets.token_hex(8)}"
        """Set as ``WEIR_REAPER`` in a task process's environment before it starts: a process
        started but not registered yet (its group is known only once it runs, a few turns of the
        event loop later) is found by it, so a worker killed in that moment leaves nothing."""
        # A session of its own: a Ctrl-C or SIGTERM to the worker's group must not end the
        # watchdog before the worker has drained its attempts.
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), self.marker],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` should the worker die before ``forget``."""
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        """The group has ended (or was killed): leave it alone."""
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """End the watchdog (blocking, briefly): it kills whatever is still registered."""
        stdin = self._process.stdin
        if stdin is not None:
            with suppress(OSError):
                stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        with self._lock:
            try:
                # One short write (under PIPE_BUF): atomic, and the watchdog reads continuously.
                os.write(stdin.fileno(), line.encode())
            except (OSError, ValueError) as exc:
                if not self._broken:
                    self._broken = True
                    logger.error(
                        "The worker's process watchdog is gone (%s): task processes may "
                        "outlive this worker if it is killed",
                        exc,
                    )


def _watch_until_orphaned() -> None:
    """The watchdog's loop: track the registered groups until end of file, then kill them."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, pgid = line[:1], int(line[1:])
        if sign == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    groups |= _marked_groups(sys.argv[1]) if len(sys.argv) > 1 else set()
    groups.discard(os.getpgid(0))
    for pgid in groups:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _marked_groups(marker: str) -> set[int]:
    """The process groups of every process whose environment carries this worker's marker
    (Linux ``/proc``; elsewhere none are found and registration alone applies)."""
    wanted = f"{MARKER}={marker}".encode()
    groups: set[int] = set()
    with suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as environ:
                    if wanted in environ.read().split(b"\0"):
                        groups.add(os.getpgid(int(entry.name)))
            except (OSError, ProcessLookupError):
                continue  # gone, or not ours to read
    return groups


if __name__ == "__main__":
    _watch_until_orphaned()
