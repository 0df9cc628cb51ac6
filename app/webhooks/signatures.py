"""HMAC-SHA256 signatures of webhook calls, in the two styles a hook may choose.

``github``: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body, as GitHub sends it.
``timestamped``: ``X-Weir-Delivery: <id>``, ``X-Weir-Timestamp: <unix seconds>`` and
``X-Weir-Signature: sha256=<hex>`` over ``"<id>.<timestamp>.<body>"`` (as Standard Webhooks signs
``webhook-id.webhook-timestamp.body``). A timestamp outside the window is refused, and since the
delivery id is signed, a captured call cannot be replayed under a new id either: within the window
it is a duplicate of the first, later it is refused.

``github`` signs the body alone, so nothing binds a GitHub delivery id or time to it: a captured
call can be replayed under a new id at any time. That is GitHub's scheme; only ``timestamped``
hooks are protected against replays. Comparisons are constant-time; the clock and the window are
arguments, so every branch is unit-testable.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

__all__ = [
    "DEFAULT_WINDOW",
    "DELIVERY_HEADER",
    "GITHUB_HEADER",
    "MAX_DELIVERY_ID",
    "TIMESTAMPED_HEADER",
    "TIMESTAMP_HEADER",
    "BadSignature",
    "is_usable_delivery_id",
    "sign_github",
    "sign_timestamped",
    "verify_signature",
]

GITHUB_HEADER = "x-hub-signature-256"
TIMESTAMP_HEADER = "x-weir-timestamp"
TIMESTAMPED_HEADER = "x-weir-signature"
DELIVERY_HEADER = "x-weir-delivery"
MAX_DELIVERY_ID = 250
DEFAULT_WINDOW = timedelta(minutes=5)
_PREFIX = "sha256="


class BadSignature(Exception):
    """The call is not signed with the hook's secret; the message says which part failed."""


def sign_github(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_timestamped(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``X-Weir-Signature`` value for ``body`` sent as ``delivery_id`` at ``timestamp``."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return _PREFIX + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def is_usable_delivery_id(given: str) -> bool:
    """Whether a sender's delivery id can be stored and compared as it is."""
    return 0 < len(given) <= MAX_DELIVERY_ID and given.isprintable()


def verify_signature(
    style: str,
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> None:
    """Raise ``BadSignature`` unless ``headers`` sign ``body`` with ``secret`` in ``style``.

    ``headers`` is looked up with lower-case names (Starlette's headers are case-insensitive).
    """
    if style == "github":
        _compare(headers.get(GITHUB_HEADER), sign_github(secret, body), GITHUB_HEADER)
    elif style == "timestamped":
        delivery_id = _delivery_id(headers.get(DELIVERY_HEADER))
        timestamp = _fresh_timestamp(headers.get(TIMESTAMP_HEADER), now, window)
        expected = sign_timestamped(secret, delivery_id, timestamp, body)
        _compare(headers.get(TIMESTAMPED_HEADER), expected, TIMESTAMPED_HEADER)
    else:
        raise BadSignature(f"unknown signature style {style!r}")


def _compare(given: str | None, expected: str, header: str) -> None:
    if not given:
        raise BadSignature(f"the {header} header is missing")
    # Hex digests are case-insensitive; compare_digest needs ASCII on both sides.
    candidate = given.strip().lower().encode("ascii", errors="replace")
    if not hmac.compare_digest(candidate, expected.encode("ascii")):
        raise BadSignature(f"the {header} header does not match the body and the hook's secret")


def _delivery_id(given: str | None) -> str:
    """The signed delivery id: without it a replay could pass as a new delivery."""
    if not given:
        raise BadSignature(
            f"the {DELIVERY_HEADER} header is missing (it is part of what is signed)"
        )
    if not is_usable_delivery_id(given):
        raise BadSignature(
            f"the {DELIVERY_HEADER} header must be 1 to {MAX_DELIVERY_ID} printable characters"
        )
    return given


def _fresh_timestamp(given: str | None, now: datetime, window: timedelta) -> int:
    if not given:
        raise BadSignature(f"the {TIMESTAMP_HEADER} header is missing")
    text = given.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise BadSignature(f"the {TIMESTAMP_HEADER} header is not a Unix time in seconds")
    timestamp = int(text)
    if abs(now.timestamp() - timestamp) > window.total_seconds():
        raise BadSignature(
            f"the {TIMESTAMP_HEADER} header is more than {window.total_seconds():g} s away from "
            "the server's clock: sign each call when you send it"
        )
    return timestamp
