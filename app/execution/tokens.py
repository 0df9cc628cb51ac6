"""Attempt tokens: the only credential a worker holds (invariant 6).

A token is an HMAC-SHA256 over ``task_instance_id:attempt`` with the service's secret key, so it
authorises the execution API for that one attempt and nothing else, and any replica can check it
without a database read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["AttemptTokens"]


class AttemptTokens:
    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) < 16:
            raise ValueError("the secret key must be at least 16 bytes")
        self._key = secret_key

    def issue(self, task_instance_id: int, attempt: int) -> str:
        digest = hmac.new(
            self._key, f"{task_instance_id}:{attempt}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def is_valid(self, token: str, task_instance_id: int, attempt: int) -> bool:
        return hmac.compare_digest(token, self.issue(task_instance_id, attempt))
