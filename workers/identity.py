"""Names: the worker's identity, sent with every claim, and the label that makes every log line
about an attempt name its ``dag_id``, ``run_id``, ``task_id`` and ``attempt``."""

from __future__ import annotations

import os
import socket
from typing import Protocol

__all__ = ["AttemptIdentity", "attempt_label", "worker_name"]


class AttemptIdentity(Protocol):
    """What a task message and a claim have in common: the attempt they are about."""

    @property
    def dag_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...


def worker_name() -> str:
    """``hostname:pid``: what the service records as the attempt's worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def attempt_label(attempt: AttemptIdentity) -> str:
    """``dag_id=… run_id=… task_id=… attempt=…``, for log lines."""
    return (
        f"dag_id={attempt.dag_id} run_id={attempt.run_id} "
        f"task_id={attempt.task_id} attempt={attempt.attempt}"
    )
