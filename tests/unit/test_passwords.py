"""Password hashing: argon2id, salted, verified by the library, rehashed when parameters rise."""

from __future__ import annotations

from argon2 import PasswordHasher

from app.passwords import hash_password, needs_rehash, verify_password


def test_a_hash_is_argon2id_salted_and_never_the_password() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh salt each time
    assert "correct horse" not in first


def test_only_the_right_password_verifies() -> None:
    stored = hash_password("correct horse")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horse ")
    assert not verify_password(stored, "")


def test_no_stored_hash_or_a_broken_one_never_verifies() -> None:
    assert not verify_password(None, "no user has this password")
    assert not verify_password(None, "anything")
    assert not verify_password("not a hash", "anything")


def test_a_hash_made_with_weaker_parameters_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("correct horse")
    assert verify_password(weak, "correct horse")  # still accepted...
    assert needs_rehash(weak)  # ...but replaced at the next login
    assert not needs_rehash(hash_password("correct horse"))
