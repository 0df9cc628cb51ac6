"""The worker: consumes task messages, claims and runs attempts, streams their logs, heartbeats,
and reports results over the execution API. Never imports ``app``: it reaches the service only
over HTTP (invariant 6)."""

from workers.client import AttemptRefused, ExecutionApiError, ExecutionClient, RetryBudget
from workers.main import Worker

__all__ = ["AttemptRefused", "ExecutionApiError", "ExecutionClient", "RetryBudget", "Worker"]
