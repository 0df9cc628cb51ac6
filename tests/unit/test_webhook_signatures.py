"""Webhook signatures in both styles: what verifies, what is refused and why, and that a
signature made with ``openssl dgst`` (as docs/webhooks.md shows) is the one we expect."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.webhooks.signatures import (
    BadSignature,
    sign_github,
    sign_timestamped,
    verify_signature,
)

SECRET = b"It's a Secret to Everybody"
BODY = b"Hello, World!"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())


def test_github_signature_matches_githubs_documented_example() -> None:
    # The test vector of GitHub's "Validating webhook deliveries" page.
    assert sign_github(SECRET, BODY) == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_a_github_signature_verifies_whatever_the_hex_case() -> None:
    signature = sign_github(SECRET, BODY)
    verify_signature("github", SECRET, BODY, {"x-hub-signature-256": signature}, now=NOW)
    verify_signature("github", SECRET, BODY, {"x-hub-signature-256": signature.upper()}, now=NOW)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"x-hub-signature-256": ""}, "missing"),
        ({"x-hub-signature-256": sign_github(b"another secret", BODY)}, "does not match"),
        ({"x-hub-signature-256": sign_github(SECRET, BODY + b" ")}, "does not match"),
        ({"x-hub-signature-256": "sha256=ünïcödé"}, "does not match"),
    ],
)
def test_a_bad_github_signature_is_refused(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(BadSignature, match=reason):
        verify_signature("github", SECRET, BODY, headers, now=NOW)


DELIVERY = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def timestamped(
    timestamp: int, secret: bytes = SECRET, body: bytes = BODY, delivery: str = DELIVERY
) -> dict[str, str]:
    return {
        "x-weir-delivery": delivery,
        "x-weir-timestamp": str(timestamp),
        "x-weir-signature": sign_timestamped(secret, delivery, timestamp, body),
    }


def test_the_timestamped_scheme_signs_id_timestamp_and_body_as_standard_webhooks_does() -> None:
    # Standard Webhooks' signed content is "<webhook-id>.<webhook-timestamp>.<body>".
    signed = f"{DELIVERY}.{TS}.".encode() + BODY
    expected = "sha256=" + hmac.new(SECRET, signed, hashlib.sha256).hexdigest()
    assert sign_timestamped(SECRET, DELIVERY, TS, BODY) == expected


@pytest.mark.parametrize("offset", [0, -300, 300, -12])
def test_a_timestamped_signature_verifies_within_the_window(offset: int) -> None:
    verify_signature("timestamped", SECRET, BODY, timestamped(TS + offset), now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_a_timestamp_outside_the_window_is_refused(offset: int) -> None:
    with pytest.raises(BadSignature, match="away from the server's clock"):
        verify_signature("timestamped", SECRET, BODY, timestamped(TS + offset), now=NOW)


def test_the_window_is_an_argument() -> None:
    headers = timestamped(TS - 30)
    with pytest.raises(BadSignature, match="away"):
        verify_signature(
            "timestamped", SECRET, BODY, headers, now=NOW, window=timedelta(seconds=10)
        )


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    headers = timestamped(TS)
    headers["x-weir-timestamp"] = str(TS + 1)  # a replay with a fresh timestamp
    with pytest.raises(BadSignature, match="does not match"):
        verify_signature("timestamped", SECRET, BODY, headers, now=NOW)


def test_the_delivery_id_is_part_of_what_is_signed() -> None:
    headers = timestamped(TS)
    headers["x-weir-delivery"] = "another-id"  # a captured call replayed under a new id
    with pytest.raises(BadSignature, match="does not match"):
        verify_signature("timestamped", SECRET, BODY, headers, now=NOW)


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "missing"), ("", "missing"), ("a\nb", "printable"), ("x" * 251, "printable")],
)
def test_a_timestamped_call_needs_a_usable_delivery_id(value: str | None, reason: str) -> None:
    headers = timestamped(TS)
    del headers["x-weir-delivery"]
    if value is not None:
        headers["x-weir-delivery"] = value
    with pytest.raises(BadSignature, match=reason):
        verify_signature("timestamped", SECRET, BODY, headers, now=NOW)


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5", "9" * 20])
def test_a_malformed_timestamp_is_refused(value: str) -> None:
    headers = timestamped(TS)
    headers["x-weir-timestamp"] = value
    with pytest.raises(BadSignature, match="x-weir-timestamp"):
        verify_signature("timestamped", SECRET, BODY, headers, now=NOW)


def test_a_github_signature_does_not_open_a_timestamped_hook() -> None:
    headers = {
        "x-hub-signature-256": sign_github(SECRET, BODY),
        "x-weir-timestamp": str(TS),
        "x-weir-delivery": DELIVERY,
    }
    with pytest.raises(BadSignature, match="x-weir-signature"):
        verify_signature("timestamped", SECRET, BODY, headers, now=NOW)


GITHUB_COMMAND = """openssl dgst -sha256 -hmac "$SECRET" -r < body.json | cut -d' ' -f1"""
TIMESTAMPED_COMMAND = """{ printf '%s.%s.' "$DELIVERY" "$TIMESTAMP"; cat body.json; } \\
    | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1"""


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_openssl_commands_of_the_docs_make_our_signatures(tmp_path: Path) -> None:
    """The shell lines docs/webhooks.md shows, run for real (and checked to be in the docs)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    assert GITHUB_COMMAND in docs
    assert TIMESTAMPED_COMMAND.replace("\\\n    ", "\\\n             ") in docs
    body = b'{"ref": "refs/heads/main", "after": "9f2c1e"}\n'
    (tmp_path / "body.json").write_bytes(body)

    def run(command: str) -> str:
        environment = {
            "SECRET": SECRET.decode(),
            "DELIVERY": DELIVERY,
            "TIMESTAMP": str(TS),
            "PATH": "/usr/bin:/bin",
        }
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=environment, capture_output=True, check=True
        )
        return result.stdout.decode().strip()

    assert "sha256=" + run(GITHUB_COMMAND) == sign_github(SECRET, body)
    assert "sha256=" + run(TIMESTAMPED_COMMAND) == sign_timestamped(SECRET, DELIVERY, TS, body)
