"""Encryption at rest for connections, variables and webhook secrets (invariant 6).

``WEIR_FERNET_KEYS`` is a comma-separated list of Fernet keys, newest first: new values are
encrypted with the first, and any of them decrypts, so a key is rotated by putting a new one in
front, re-encrypting (``weir secrets rotate``) and later dropping the old one. Without the
setting, one key is derived from ``WEIR_SECRET_KEY`` (HKDF-SHA256), so a newcomer needs no extra
setup; production deployments should set their own keys. The derived key always stays last in
the list (for decryption only, once keys are set), so leaving it is one rotation: set
``WEIR_FERNET_KEYS``, restart, rotate.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from weir.config import Settings
from weir.errors import ConfigError

__all__ = ["SecretBox", "derive_fernet_key"]


def derive_fernet_key(secret_key: str) -> str:
    """A Fernet key computed from the service's secret key (the fallback when none is set)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"weir fernet key v1")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())).decode()


class SecretBox:
    """Encrypts and decrypts strings with the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("SecretBox needs at least one Fernet key.")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as error:
            raise ConfigError(
                "WEIR_FERNET_KEYS holds a value that is not a Fernet key (32 url-safe base64 "
                "bytes). Generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from error

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        keys = [key.get_secret_value() for key in settings.fernet_keys]
        if settings.secret_key is not None:
            derived = derive_fernet_key(settings.secret_key.get_secret_value())
            keys += [derived] if derived not in keys else []
        return cls(keys)

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        """The clear value; ``ConfigError`` if no configured key opens it (a key was dropped)."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as error:
            raise ConfigError(
                "A stored secret cannot be decrypted with WEIR_FERNET_KEYS: put back the key it "
                "was encrypted with (keys are tried in order)."
            ) from error

    def rotate(self, token: bytes) -> bytes:
        """The same value encrypted with the newest key."""
        return self._fernet.rotate(token)
