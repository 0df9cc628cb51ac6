"""The standalone data directory, private to the user who runs Weir.

It holds the SQLite database (connection secrets encrypted, but run confs, logs and return values
in clear), the secret key and the admin's token and password: the directory is 0700 and each file
0600, whatever the umask. SQLite creates its ``-wal`` and ``-shm`` files with the database file's
own mode, so a database created 0600 keeps its companions private too.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

__all__ = ["make_private", "prepare_data_dir", "read_or_create_secret"]

log = logging.getLogger(__name__)

DATABASE_COMPANIONS = ("-wal", "-shm", "-journal")


def prepare_data_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or tighten it to 0700 when it exists and is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid != os.getuid():
        log.warning("data directory %s belongs to another user: its mode is left as it is", path)
        return
    path.chmod(0o700)


def make_private(path: Path) -> None:
    """Make ``path`` a file only its owner reads (created empty when missing, which SQLite
    takes for a new database), and tighten the database's companion files that exist."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)
    for suffix in DATABASE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.chmod(0o600)


def read_or_create_secret(path: Path, prefix: str = "") -> str:
    """The secret kept in ``path``, made (0600 from its first byte) if it does not exist yet."""
    if not path.exists():
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(prefix + secrets.token_urlsafe(32))
    path.chmod(0o600)
    return path.read_text().strip()
