"""The pure parts of secret handling: which names are secret, which values of a connection a log
must hide, how the masker hides them, and connection URIs both ways."""

from __future__ import annotations

import pytest

from weir.errors import InvalidRequest
from weir.resources import Connection, is_secret_name
from workers.logs import SecretMasker


@pytest.mark.parametrize(
    ("name", "secret"),
    [("db_password", True), ("API_KEY", True), ("github_token", True), ("gcp_credentials", True),
     ("private_key_pem", True), ("region", False), ("timeout", False), ("host", False)],
)  # fmt: skip
def test_secret_names_follow_airflows_heuristic(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_masker_hides_each_secret_and_its_url_encoded_form() -> None:
    masker = SecretMasker()
    assert masker.mask("nothing to hide") == "nothing to hide"
    masker.add(["p@ss word", "hunter22"])
    text = "pw=p@ss word uri=x://u:p%40ss%20word@h other=hunter22hunter22"
    assert masker.mask(text) == "pw=*** uri=x://u:***@h other=******"


def test_masker_hides_the_longer_of_overlapping_secrets_whole() -> None:
    masker = SecretMasker()
    masker.add(["secret", "secret-and-more"])
    assert masker.mask("a secret-and-more b") == "a *** b"


def test_masker_leaves_values_too_short_to_mask() -> None:
    masker = SecretMasker()
    masker.add(["1", "yes", ""])
    assert masker.mask("1 yes") == "1 yes"


def test_a_connections_secrets_are_its_password_and_secret_extra_fields() -> None:
    conn = Connection(
        "c", "http", password="the-password",
        extra={"api_key": "key-12345", "timeout": "30", "token_ttl": 5, "region": "eu"},
    )  # fmt: skip
    assert conn.secret_values() == ["the-password", "key-12345"]
    assert "the-password" not in repr(conn)


def test_a_uri_round_trips_through_a_connection() -> None:
    uri = "postgresql://etl:p%40ss%2Fw@db.example.com:5432/analytics?sslmode=require"
    conn = Connection.from_uri("warehouse", uri)
    assert (conn.conn_type, conn.host, conn.port, conn.login) == (
        "postgresql", "db.example.com", 5432, "etl",
    )  # fmt: skip
    assert (conn.password, conn.schema, conn.extra) == (
        "p@ss/w",
        "analytics",
        {"sslmode": "require"},
    )
    assert conn.get_uri() == uri


@pytest.mark.parametrize("uri", ["not a uri", "db.example.com:5432", "postgres://h:port/x"])
def test_a_malformed_uri_is_refused_with_an_example(uri: str) -> None:
    with pytest.raises(InvalidRequest, match="type://"):
        Connection.from_uri("c", uri)
