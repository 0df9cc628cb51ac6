"""Password hashing: argon2id through ``argon2-cffi``, with its recommended parameters.

A stored hash carries its own parameters, so raising them later only needs ``needs_rehash`` at the
next successful login. Comparison is the library's (constant time). Hashing costs tens of
milliseconds of CPU on purpose: async callers run these functions in a thread.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_password", "needs_rehash", "verify_password"]

_hasher = PasswordHasher()


@cache
def _unknown_user_hash() -> str:
    """Verified against when there is no hash, so that an unknown username costs as much time as
    a wrong password and answers cannot be told apart by their timing."""
    return _hasher.hash("no user has this password")


def hash_password(password: str) -> str:
    """The argon2id hash to store (salted: two calls give two different strings)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` (no password set) never matches,
    but still spends the time of a verification."""
    try:
        return _hasher.verify(stored_hash or _unknown_user_hash(), password) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with weaker parameters than today's (rehash on login)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
